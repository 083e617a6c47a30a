package enrich

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// fakeSystemctl writes an executable standing in for systemctl: it counts
// its runs in a file next to it and prints script's output. It returns
// the path and a function reading the count.
func fakeSystemctl(t *testing.T, script string) (string, func() int) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "systemctl")
	count := filepath.Join(dir, "runs")
	body := "#!/bin/sh\necho run >> " + count + "\n" + script + "\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "run")
	}
}

const listing = `[{"listen":"/run/dbus/system_bus_socket","type":"Stream","unit":"dbus.socket","activates":"dbus.service"},
{"listen":"127.0.0.1:8080","type":"Stream","unit":"web.socket","activates":"web.service"},
{"listen":"[::]:53","type":"Datagram","unit":"dns.socket","activates":"dns.service"},
{"listen":"[::]:53","type":"Stream","unit":"dnstcp.socket","activates":"dns.service"},
{"listen":"0.0.0.0:9000","type":"Stream","unit":"a.socket","activates":"a.service"},
{"listen":"0.0.0.0:9000","type":"Stream","unit":"b.socket","activates":"b.service"},
{"listen":"0.0.0.0:7000","type":"Stream","unit":"bad\u001b.socket","activates":"x.service"},
{"listen":"0.0.0.0:7001","type":"Stream","unit":"notasocket.service","activates":"x.service"}]`

// The system's manager's listing (systemctl list-sockets --output=json)
// names the socket unit on an address: by family, protocol and port; two
// units on one address are named as such; names systemd would not give
// are dropped. One burst of lookups runs systemctl once.
func TestSocketUnitsFromListing(t *testing.T) {
	path, runs := fakeSystemctl(t, "cat <<'EOF'\n"+listing+"\nEOF")
	s := &SocketUnits{systemctl: []string{path}, timeout: 2 * time.Second}
	for _, c := range []struct {
		proto, addr string
		port        uint16
		want        string
	}{
		{"tcp", "127.0.0.1", 8080, "web.socket"},
		{"tcp", "0.0.0.0", 8080, ""},
		{"udp", "127.0.0.1", 8080, ""},
		{"udp", "::", 53, "dns.socket"},
		{"tcp", "::", 53, "dnstcp.socket"},
		{"tcp", "0.0.0.0", 9000, "a.socket b.socket"},
		{"tcp", "0.0.0.0", 7000, ""},
		{"tcp", "0.0.0.0", 7001, ""},
	} {
		units, err := s.Lookup(c.proto, c.addr, c.port)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(units, " "); got != c.want {
			t.Errorf("%s %s:%d: socket units %q, want %q", c.proto, c.addr, c.port, got, c.want)
		}
	}
	if n := runs(); n != 1 {
		t.Errorf("systemctl ran %d times for one burst, want once", n)
	}

	h := &events.Holder{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "127.0.0.1", Port: 8080}
	p := &events.Process{PID: 1, Comm: "systemd"}
	if note := s.Holder(h, p); note != "" || p.SocketUnit != "web.socket" {
		t.Errorf("pid 1: socket unit %q, note %q; want web.socket", p.SocketUnit, note)
	}
	h.Port = 9000
	h.Addr = "0.0.0.0"
	p = &events.Process{PID: 1, Comm: "systemd"}
	if note := s.Holder(h, p); p.SocketUnit != "" || !strings.Contains(note, "several socket units") {
		t.Errorf("two units: socket unit %q, note %q", p.SocketUnit, note)
	}
	// A container's manager is not asked; a user's is not either, and
	// says so.
	h.Port = 8080
	h.Addr = "127.0.0.1"
	for _, p := range []*events.Process{
		{PID: 4321, NSPID: 1, Comm: "systemd"},
		{PID: 4000, UID: 1000, Comm: "systemd", Cmdline: []string{"/lib/systemd/systemd", "--user"}},
		{PID: 1, Comm: "init"},
	} {
		note := s.Holder(h, p)
		if p.SocketUnit != "" || (p.UID == 1000) != strings.Contains(note, "not a user's") {
			t.Errorf("%+v: socket unit %q, note %q", p, p.SocketUnit, note)
		}
	}
	if n := runs(); n != 1 {
		t.Errorf("systemctl ran %d times, want once", n)
	}
}

// Without an answer — no systemctl, one that fails, one that hangs, one
// too old for JSON — the lookup says why, and a burst asks once a second
// at most.
func TestSocketUnitsFallback(t *testing.T) {
	h := &events.Holder{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "127.0.0.1", Port: 8080}
	missing := filepath.Join(t.TempDir(), "systemctl")
	failing, failRuns := fakeSystemctl(t, "echo 'Failed to connect to bus: No such file or directory' >&2; exit 1")
	hanging, _ := fakeSystemctl(t, "exec sleep 10")
	old, _ := fakeSystemctl(t, "echo '127.0.0.1:8080 web.socket web.service'")
	for _, c := range []struct {
		name, path, want string
	}{
		{"none", missing, "no systemctl"},
		{"failing", failing, "Failed to connect to bus"},
		{"hanging", hanging, "no answer within 300ms"},
		{"no JSON", old, "systemd before 246"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &SocketUnits{systemctl: []string{c.path}, timeout: 300 * time.Millisecond}
			p := &events.Process{PID: 1, Comm: "systemd"}
			start := time.Now()
			note := s.Holder(h, p)
			if p.SocketUnit != "" || !strings.Contains(note, c.want) {
				t.Errorf("socket unit %q, note %q; want a note with %q", p.SocketUnit, note, c.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the lookup took %s", d)
			}
			if c.path == failing {
				s.Holder(h, p)
				s.Holder(h, p)
				if n := failRuns(); n != 1 {
					t.Errorf("a failing systemctl ran %d times in a burst, want once", n)
				}
			}
		})
	}
}
