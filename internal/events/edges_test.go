package events

import (
	"strings"
	"testing"
	"time"
)

// liveWriter collects what a LiveText writes.
type liveWriter struct {
	l   *LiveText
	out []string
}

func (w *liveWriter) write(rec Record) string {
	s, ok := w.l.Text(rec)
	if !ok {
		return ""
	}
	w.out = append(w.out, s)
	return s
}

// Once its tables are full, the live text forgets what has been quiet for
// LiveQuietGap, exactly that long included, and then tells and remembers
// the next failure as it would have with room: its why/fix once, its
// address in the repeats line.
func TestLiveTextFullTablesForgetQuiet(t *testing.T) {
	w := &liveWriter{l: NewLiveText(LiveOptions{})}
	for i := range maxLiveKeys {
		f := liveFailure(0, 100+i, "x")
		f.Port = uint16(1000 + i)
		w.write(f)
	}
	if s := w.write(liveFailure(LiveQuietGap, 7, "nginx")); !strings.Contains(s, "why:") {
		t.Fatalf("new failure after the quiet gap: %q, want its why/fix", s)
	}
	r := &Repeats{Header: Header{Time: epoch.Add(LiveQuietGap)}, PID: 7, Comm: "nginx", Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: 45080, Count: 3}
	if s := w.write(r); !strings.Contains(s, "tcp 127.0.0.1:45080 pid 7") {
		t.Errorf("repeats: %q, want the address the failure was remembered with", s)
	}
	if s := w.write(liveFailure(LiveQuietGap+time.Millisecond, 7, "nginx")); strings.Contains(s, "why:") {
		t.Errorf("the same failure again: %q, want the short line (it was remembered)", s)
	}

	// One process and port, as many programs as the table holds (a
	// process that rewrites its command line): the why/fix table alone
	// is full, and forgets as well.
	w = &liveWriter{l: NewLiveText(LiveOptions{})}
	for i := range maxLiveKeys {
		w.write(liveFailure(0, 100, "x", string(rune('a'+i%26)), string(rune('a'+i/26%26)), string(rune('a'+i/676))))
	}
	if s := w.write(liveFailure(LiveQuietGap, 100, "nginx")); !strings.Contains(s, "why:") {
		t.Fatalf("new program after the quiet gap: %q, want its why/fix", s)
	}
	if s := w.write(liveFailure(LiveQuietGap+time.Millisecond, 100, "nginx")); strings.Contains(s, "why:") {
		t.Errorf("the same program again: %q, want the short line (it was told)", s)
	}
}

// Repeats keep a block's period going: a failure a quiet gap after the
// first but soon after its repeats is still a short line.
func TestLiveTextRepeatsKeepPeriod(t *testing.T) {
	w := &liveWriter{l: NewLiveText(LiveOptions{})}
	w.write(liveFailure(0, 20, "nginx"))
	w.write(&Repeats{Header: Header{Time: epoch.Add(LiveQuietGap - time.Second)}, PID: 20, Comm: "nginx", Proto: "tcp", Port: 45080, Count: 9})
	if s := w.write(liveFailure(LiveQuietGap+time.Second, 20, "nginx")); strings.Contains(s, "why:") {
		t.Errorf("failure 2 s after repeats: %q, want the short line", s)
	}
}

// The short line names a holder without a process by its state alone,
// and the repeats line lists at most maxFoldAddrs addresses.
func TestLiveTextShortLines(t *testing.T) {
	w := &liveWriter{l: NewLiveText(LiveOptions{})}
	f := liveFailure(0, 20, "nginx")
	f.Holders = []Holder{{State: "TIME_WAIT", Addr: "127.0.0.1", Port: 45080}}
	w.write(f)
	for i, addr := range []string{"127.0.0.2", "127.0.0.3"} {
		g := liveFailure(time.Duration(i+1)*time.Millisecond, 20, "nginx")
		g.Addr, g.Holders = addr, f.Holders
		if s := w.write(g); i == 0 && !strings.HasSuffix(s, "pid 20 (nginx) <- held by TIME_WAIT (again: already_running, why/fix as at 10:31:02.113)") {
			t.Errorf("short line: %q, want the holder by its state", s)
		}
	}
	s := w.write(&Repeats{Header: Header{Time: epoch.Add(time.Second)}, PID: 20, Comm: "nginx", Proto: "tcp", Port: 45080, Count: 2})
	if !strings.Contains(s, "127.0.0.1:45080 and 127.0.0.2:45080 pid 20") || strings.Contains(s, "127.0.0.3") {
		t.Errorf("repeats: %q, want the first %d addresses", s, maxFoldAddrs)
	}
}

// Two executables are two programs even with one comm and command line:
// each gets its why/fix.
func TestLiveTextProgramByExecutable(t *testing.T) {
	w := &liveWriter{l: NewLiveText(LiveOptions{})}
	a, b := liveFailure(0, 20, "app"), liveFailure(time.Millisecond, 21, "app")
	a.Process.Exe, b.Process.Exe = "/usr/bin/app", "/opt/app/bin/app"
	if w.write(a); !strings.Contains(w.write(b), "why:") {
		t.Errorf("another executable: %q, want its own why/fix", w.out[1])
	}
}

func TestFormatEdges(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{ProcessShort(&Process{PID: 5, Comm: "nginx"}), "pid 5 (nginx)"},
		{ProcessShort(&Process{PID: 5}), "pid 5"},
		{HolderLine(&Holder{State: "LISTEN", Processes: []Process{{PID: 1, Comm: "a"}}}, false), "pid 1 (a) LISTEN"},
		{HolderLine(&Holder{State: "LISTEN", Processes: []Process{{PID: 1, Comm: "a"}, {PID: 2}}}, false), "pid 1 (a) LISTEN +1 process"},
		{HolderLine(&Holder{State: "LISTEN", Processes: []Process{{PID: 1, Comm: "a"}, {PID: 2}, {PID: 3}}}, false), "pid 1 (a) LISTEN +2 processes"},
		{ContainerText(&Process{Container: Container{Name: "web", ID: "0123456789abcdef"}}), "container web"},
		{ContainerText(&Process{Container: Container{ID: "0123456789abcdef"}}), "container 0123456789ab"},
		{ContainerText(&Process{ContainerID: "fedcba9876543210"}), "container fedcba987654"},
		{ContainerText(&Process{Pod: Pod{Name: "web-1", Namespace: "shop"}}), "pod shop/web-1"},
		{ContainerText(&Process{Pod: Pod{Name: "web-1"}, Container: Container{Name: "web"}}), "container web (pod web-1)"},
		{ContainerText(&Process{Pod: Pod{Namespace: "shop"}}), ""},
		{AbandonedWhy(AbandonedExited, 5000), "every failing process has exited"},
		{AbandonedWhy(AbandonedQuiet, 5000), "nobody tried for 5s"},
		{Millis(1312), "1.312s"},
		{Millis(300), "300ms"},
		{Unescape(`a\`), `a\`},
		{Unescape(`a\x4`), `a\x4`},
		{Unescape(`\\\x41`), `\A`},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// A recovery's line says its clients' impact only when there was some.
func TestRecoveredTextImpact(t *testing.T) {
	r := &Recovered{Header: Header{Time: epoch}, Proto: "tcp", Addr: "0.0.0.0", Port: 80, Syscall: "listen", Process: Process{PID: 9, Comm: "nginx"}, Attempts: 2}
	if s := Text(r); strings.Count(s, ";") != 1 {
		t.Errorf("recovered without impact: %q, want no impact clause", s)
	}
}
