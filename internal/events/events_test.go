package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 25, 10, 31, 2, 113_000_000, time.UTC)

func TestTextFailure(t *testing.T) {
	f := Failure{Header: Header{Time: epoch}, Errno: "EADDRINUSE", Syscall: "bind", Proto: "tcp", Addr: "0.0.0.0", Port: 8080,
		Socket:  Socket{ReuseAddr: true},
		Process: Process{PID: 4242, UID: 1000, Comm: "python3"}}
	f.Process.Cmdline = []string{"python3", "-c", "import x\nrun()"}
	f.Holders = []Holder{{Source: SeenLive, State: "LISTEN", Addr: "0.0.0.0", Port: 8080,
		Processes: []Process{{PID: 4000, Cmdline: []string{"nginx: master process"}}, {PID: 4001}}}}
	f.Diagnosis, f.Hint = "port 8080 is held by nginx.", "Stop nginx."
	got := Text(&f)
	line, rest, _ := strings.Cut(got, "\n")
	want := epoch.Local().Format("15:04:05.000") + " EADDRINUSE bind tcp 0.0.0.0:8080 pid 4242 (python3 -c import x\\x0arun()) uid 1000 reuseaddr=on <- held by pid 4000 (nginx: master process) LISTEN 0.0.0.0:8080 +1 process"
	if line != want {
		t.Errorf("text line\n got %q\nwant %q", line, want)
	}
	if rest != "  why: port 8080 is held by nginx.\n  fix: Stop nginx." {
		t.Errorf("continuation %q", rest)
	}
}

func TestHostPort(t *testing.T) {
	for _, c := range []struct {
		addr string
		want string
	}{{"0.0.0.0", "0.0.0.0:80"}, {"::", "[::]:80"}, {"::ffff:10.0.0.1", "[::ffff:10.0.0.1]:80"},
		{"fe80::1%eth0", "[fe80::1%eth0]:80"}, {"not:an:address", "[not:an:address]:80"}, {"", ":80"}} {
		if got := HostPort(c.addr, 80); got != c.want {
			t.Errorf("HostPort(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
}

// JSON lines: one object per Write, whole, in the documented field names.
func TestWriterJSON(t *testing.T) {
	var b strings.Builder
	w, err := NewWriter(&b, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(&Lost{Header: Header{Type: TypeLost, Version: Version, Time: epoch, Host: "h"}, Count: 3})
	w.Write(&Stop{Header: Header{Type: TypeStop, Version: Version, Time: epoch, Host: "h"}, Failures: 5, Reported: 1, Folded: 1, Lost: 3})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), b.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["count"] != 3.0 || m["time"] != "2026-11-25T10:31:02.113Z" {
		t.Errorf("lost line %s (%v)", lines[0], err)
	}
	m = nil
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m["type"] != "stop" || m["version"] != float64(Version) ||
		m["failures"] != 5.0 || m["reported"] != 1.0 || m["folded"] != 1.0 || m["lost"] != 3.0 || m["host"] != "h" {
		t.Errorf("stop line %s (%v): want failures 5, reported 1, folded 1, lost 3", lines[1], err)
	}
	if _, err := NewWriter(&b, "yaml"); err == nil {
		t.Error("NewWriter accepted format yaml")
	}
}

// One line for a holder: full where the line has not named the port, brief
// where it has.
func TestHolderLine(t *testing.T) {
	nginx := Process{PID: 42, Comm: "nginx", Cmdline: []string{"nginx: master"}, Unit: "nginx.service"}
	worker := Process{PID: 43, Comm: "nginx"}
	for _, c := range []struct {
		h           Holder
		full, brief string
	}{
		{Holder{State: "LISTEN", Addr: "::", Port: 80, Processes: []Process{nginx, worker, worker}},
			"pid 42 (nginx: master) LISTEN [::]:80 +2 processes in unit nginx.service", "pid 42 (nginx: master) LISTEN +2 processes"},
		{Holder{State: "LISTEN", Addr: "0.0.0.0", Port: 80, Source: Recorded, Processes: []Process{nginx, worker}},
			"pid 42 (nginx: master) LISTEN 0.0.0.0:80 +1 process in unit nginx.service [exited since]", "pid 42 (nginx: master) LISTEN +1 process [exited since]"},
		{Holder{State: "TIME_WAIT", Addr: "127.0.0.1", Port: 80, RemainingMS: 1500},
			"TIME_WAIT 127.0.0.1:80 (no process, 1500ms left)", "TIME_WAIT (no process)"},
		{Holder{State: "LISTEN", Addr: "127.0.0.1", Port: 80, Unowned: UnownedNoFDTable},
			"LISTEN 127.0.0.1:80 (held by no process's fd table: in flight in a unix socket's queue?)", "LISTEN (no process)"},
	} {
		if got := HolderLine(&c.h, true); got != c.full {
			t.Errorf("full:  %q\n want %q", got, c.full)
		}
		if got := HolderLine(&c.h, false); got != c.brief {
			t.Errorf("brief: %q\n want %q", got, c.brief)
		}
	}
}
