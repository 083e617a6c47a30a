package events

import (
	"strings"
	"testing"
	"time"
)

func liveFailure(at time.Duration, pid int, cmdline ...string) *Failure {
	return &Failure{
		Header: Header{Time: epoch.Add(at)}, Errno: "EADDRINUSE", Syscall: "bind", Proto: "tcp", Addr: "127.0.0.1", Port: 45080,
		Process: Process{PID: pid, Comm: "nginx", Exe: "/usr/sbin/nginx", Cmdline: cmdline, Netns: 7},
		Holders: []Holder{{State: "LISTEN", Addr: "127.0.0.1", Port: 45080, Processes: []Process{{PID: 10, Comm: "nginx"}}}},
		Cause:   "already_running", Diagnosis: "nginx (pid 10) serves this port.", Hint: "Reload it.",
	}
}

// One why/fix per program, port and cause; short lines with the address
// after it; a recovery or a quiet gap starts over.
func TestLiveText(t *testing.T) {
	l := NewLiveText(LiveOptions{})
	var out []string
	write := func(rec Record) {
		if s, ok := l.Text(rec); ok {
			out = append(out, s)
		}
	}
	nginx := []string{"nginx", "-c", "/tmp/b.conf"}
	write(liveFailure(0, 20, nginx...))
	write(liveFailure(500*time.Millisecond, 20, nginx...))
	write(&Repeats{Header: Header{Time: epoch.Add(time.Second)}, PID: 20, Comm: "nginx", Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: 45080, Count: 2})
	// The same program again, as a new process (a supervisor's restart).
	write(liveFailure(2*time.Second, 21, nginx...))
	// Another program on the port: its own why/fix.
	write(liveFailure(2100*time.Millisecond, 30, "nginx", "-c", "/tmp/c.conf"))
	text := strings.Join(out, "\n")
	if n := strings.Count(text, "why:"); n != 2 {
		t.Errorf("%d why lines, want 2 (one per program):\n%s", n, text)
	}
	if !strings.Contains(out[1], "127.0.0.1:45080 pid 20 (nginx) <- held by pid 10 (nginx) LISTEN (again: already_running, why/fix as at") ||
		strings.Contains(out[1], "\n") {
		t.Errorf("second failure: %q, want one short line with the address", out[1])
	}
	if !strings.Contains(out[2], "tcp 127.0.0.1:45080 pid 20 (nginx) failed the same way 2 more times") {
		t.Errorf("repeats: %q, want the address", out[2])
	}
	if strings.Contains(out[3], "why:") {
		t.Errorf("restart of the same program: %q, want a short line", out[3])
	}

	// The port recovers: its incident has ended, the next failure is new.
	write(&Recovered{Header: Header{Time: epoch.Add(3 * time.Second)}, Netns: 7, Proto: "tcp", Port: 45080, Process: Process{PID: 20}})
	write(liveFailure(4*time.Second, 22, nginx...))
	if !strings.Contains(out[len(out)-1], "why:") {
		t.Errorf("after a recovery: %q, want the why/fix again", out[len(out)-1])
	}
	// An abandoned incident has ended too.
	write(liveFailure(4500*time.Millisecond, 22, nginx...))
	if strings.Contains(out[len(out)-1], "why:") {
		t.Errorf("in the same incident: %q, want a short line", out[len(out)-1])
	}
	write(&Abandoned{Header: Header{Time: epoch.Add(5 * time.Second)}, Netns: 7, Proto: "tcp", Port: 45080})
	write(liveFailure(6*time.Second, 22, nginx...))
	if !strings.Contains(out[len(out)-1], "why:") {
		t.Errorf("after the incident was abandoned: %q, want the why/fix again", out[len(out)-1])
	}
	// Quiet for LiveQuietGap: again.
	write(liveFailure(6*time.Second+LiveQuietGap, 22, nginx...))
	if !strings.Contains(out[len(out)-1], "why:") {
		t.Errorf("after %v of quiet: %q, want the why/fix again", LiveQuietGap, out[len(out)-1])
	}
}

func TestLiveTextOptions(t *testing.T) {
	f := liveFailure(0, 20, "nginx")
	l := NewLiveText(LiveOptions{NoHints: true})
	if s, _ := l.Text(f); !strings.Contains(s, "why:") || strings.Contains(s, "fix:") {
		t.Errorf("--no-hints: %q, want why and no fix", s)
	}
	l = NewLiveText(LiveOptions{Quiet: true})
	if s, _ := l.Text(f); strings.Contains(s, "why:") || strings.Contains(s, "fix:") || strings.Contains(s, "\n") {
		t.Errorf("--quiet: %q, want the failure's line only", s)
	}
	for _, rec := range []Record{&Start{}, &Stop{}, &Signal{}, &Released{}, &Recovered{}, &Abandoned{}, &PortFree{}} {
		if s, ok := l.Text(rec); ok {
			t.Errorf("--quiet wrote %T: %q", rec, s)
		}
	}
	for _, rec := range []Record{&Repeats{Count: 2}, &Lost{Count: 1}} {
		if _, ok := l.Text(rec); !ok {
			t.Errorf("--quiet left out %T", rec)
		}
	}
}

// What a user makes fail cannot grow the tables without bound.
func TestLiveTextBounded(t *testing.T) {
	l := NewLiveText(LiveOptions{})
	// Three times the bound within a second: the full tables are walked
	// for quiet entries once, not once per key past the bound (a storm
	// of new keys from any user would pay a walk per record).
	for i := range 3 * maxLiveKeys {
		f := liveFailure(time.Duration(i)*time.Microsecond, 100+i, "x")
		f.Port = uint16(i)
		l.Text(f)
	}
	if len(l.told) > maxLiveKeys || len(l.seen) > maxLiveKeys {
		t.Errorf("tables of %d and %d entries, want at most %d", len(l.told), len(l.seen), maxLiveKeys)
	}
	if first := epoch.Add(time.Duration(maxLiveKeys) * time.Microsecond); !l.forgotAt.Equal(first) {
		t.Errorf("tables last walked at %v, want once, when they filled (%v)", l.forgotAt.Sub(epoch), first.Sub(epoch))
	}
}
