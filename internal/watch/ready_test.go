package watch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A symlink planted after the start-up check, just before the ready file
// is made, is not followed (O_NOFOLLOW|O_EXCL): the target is untouched.
// The file made is removed at the end — unless something replaced it.
func TestReadyFileNeverFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep\n"), 0o600)
	link := filepath.Join(dir, "ready")
	os.Symlink(target, link)
	if _, err := createReadyFile(link, "tracepoint"); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("ready file through a symlink: err = %v, want a refusal that says why", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("symlink target written: %q", b)
	}
	if err := checkReadyFile(link); err == nil {
		t.Error("checkReadyFile accepts an existing symlink")
	}

	path := filepath.Join(dir, "mine")
	r, err := createReadyFile(path, "tracepoint")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "tracepoint\n" {
		t.Errorf("ready file holds %q", b)
	}
	r.remove()
	if _, err := os.Lstat(path); err == nil {
		t.Error("ready file not removed")
	}
	r, _ = createReadyFile(path, "tracepoint")
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("someone else's\n"), 0o644)
	os.Rename(other, path) // replaced meanwhile
	r.remove()
	if _, err := os.Lstat(path); err != nil {
		t.Error("removed a file that replaced the ready file")
	}
}
