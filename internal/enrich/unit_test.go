package enrich

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestUnitOf(t *testing.T) {
	for _, c := range []struct{ path, unit, manager string }{
		{"/system.slice/nginx.service", "nginx.service", ""},
		{"/system.slice/foo.service/worker", "foo.service", ""},
		{"/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", ""},
		{"/system.slice/cups.socket", "cups.socket", ""},
		{"/user.slice/user-1000.slice/session-3.scope", "session-3.scope", ""},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "foo.service", "user@1000.service"},
		{"/user.slice/user-1000.slice/user@1000.service/init.scope", "init.scope", "user@1000.service"},
		{"/user.slice/user-1000.slice/user@1000.service", "user@1000.service", ""},
		{"/init.scope", "init.scope", ""},
		{"/", "", ""},
		{"", "", ""},
		{"/docker/" + dockerPlain, "", ""},
		{"/system.slice/.service", "", ""},
	} {
		unit, manager := UnitOf(c.path)
		if unit != c.unit || manager != c.manager {
			t.Errorf("UnitOf(%q) = %q, %q; want %q, %q", c.path, unit, manager, c.unit, c.manager)
		}
	}
}

func TestSystemdV1Path(t *testing.T) {
	cg := "12:pids:/system.slice/x.service\n1:name=systemd:/system.slice/nginx.service\n0::/\n"
	if got := systemdV1Path(cg); got != "/system.slice/nginx.service" {
		t.Errorf("systemdV1Path = %q", got)
	}
}

// Restart= from a unit's file, its template's, and its drop-ins (the last
// one in name order wins); "" when no file names the unit.
func TestUnitRestart(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lib/systemd/system/a.service", "[Unit]\nRestart=always\n[Service]\nExecStart=/bin/a\nRestart=on-failure\n")
	write("lib/systemd/system/b.service", "[Service]\nExecStart=/bin/b\n")
	write("etc/systemd/system/b.service.d/10-x.conf", "[Service]\nRestart=always\n")
	write("lib/systemd/system/b.service.d/20-y.conf", "[Service]\nRestart=on-abnormal\n")
	write("lib/systemd/system/c@.service", "[Service]\nRestart=always\n")
	write("lib/systemd/system/d.service", "[Service]\nExecStart=/bin/d\n")
	for unit, want := range map[string]string{
		"a.service": "on-failure", "b.service": "on-abnormal", "c@x.service": "always", "d.service": "no",
		"e.service": "", "a.scope": "", "../a.service": "",
	} {
		if got := UnitRestart(root, unit); got != want {
			t.Errorf("UnitRestart(%q) = %q, want %q", unit, got, want)
		}
	}
	// A FIFO planted as a unit file is not opened for reading.
	if err := syscall.Mkfifo(filepath.Join(root, "etc/systemd/system/f.service"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := UnitRestart(root, "f.service"); got != "" {
		t.Errorf("UnitRestart of a FIFO = %q, want \"\"", got)
	}
}
