package host_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// A directory reached through another user's symlink is refused; through
// one of root's (or a plain directory) it is not.
func TestCheckDirLinks(t *testing.T) {
	testenv.RequireRoot(t) // to give a symlink to another user
	shared := t.TempDir()
	target := t.TempDir()
	planted := filepath.Join(shared, "logs")
	if err := os.Symlink(target, planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(shared, "ours")
	if err := os.Symlink(target, ours); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir  string
		want string // "" for accepted
	}{
		{planted, "uid 65534 owns"},
		{filepath.Join(planted, "sub"), "uid 65534 owns"},
		{ours, ""},
		{target, ""},
		{filepath.Join(shared, "missing", "dir"), ""},
	} {
		err := host.CheckDirLinks(c.dir)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", c.dir, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error saying %q", c.dir, err, c.want)
		}
	}
}
