package incident

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

func failure(at time.Time, port uint16, pid int) *events.Failure {
	return &events.Failure{Header: events.Header{Type: events.TypeFailure, Version: 1, Time: at, Host: "h"}, Proto: "tcp", Port: port,
		Errno: "EADDRINUSE", Process: events.Process{PID: pid, Netns: 1}}
}

// A port that fails for days keeps counting attempts, but its timeline
// stops growing; a flood of signals and releases makes counts grow, not
// lists; a live builder keeps no timeline, forgets ended incidents and
// caps the open ones.
func TestBuilderBounds(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	k := Key{"h", 1, "tcp", 80}
	for _, b := range []*Builder{NewBuilder(), NewLiveBuilder()} {
		b.Quiet = 24 * time.Hour
		for i := range MaxTimeline + 500 {
			b.Add(failure(t0.Add(time.Duration(i)*time.Second), 80, 7))
		}
		b.Add(&events.Repeats{Header: events.Header{Type: events.TypeRepeats, Version: 1, Time: t0.Add(time.Hour), Host: "h"}, Count: 40, PID: 7, Proto: "tcp", Port: 80})
		for i := range 3 * MaxTimeline {
			at := t0.Add(time.Hour + time.Duration(i)*time.Millisecond)
			b.Add(&events.Signal{Header: events.Header{Type: events.TypeSignal, Version: 1, Time: at, Host: "h"}, Signal: "SIGHUP", Proto: "tcp", Netns: 1, Port: 80,
				Sender: events.Process{PID: 100 + i%128, Cmdline: []string{strings.Repeat("A", 60000)}}, Target: events.Process{PID: 9}})
			b.Add(&events.Released{Header: events.Header{Type: events.TypeReleased, Version: 1, Time: at, Host: "h"}, Proto: "tcp", Netns: 1, Port: 80, Holder: &events.Process{PID: 9}})
		}
		for p := range MaxFailing + 5 {
			f := failure(t0.Add(time.Hour+time.Second), 80, 1000+p)
			f.Process.Cmdline = []string{strings.Repeat("B", 60000)}
			b.Add(f)
		}
		attempts, failed := b.Attempts(k, 7)
		if _, other := b.Attempts(k, 8); attempts != MaxTimeline+540+MaxFailing+5 || !failed || other {
			t.Errorf("attempts %d (pid 7 failed: %v, pid 8: %v), want %d by pid 7", attempts, failed, other, MaxTimeline+540)
		}
		in := b.open[k].in
		// One kind of signal: listed once, the rest folded.
		if len(in.Signals) != 1 || in.SignalsFolded != 3*MaxTimeline-1 ||
			len(in.Released) != MaxReleased || in.ReleasedOmitted != 3*MaxTimeline-MaxReleased || len(in.Failing) != MaxFailing || in.FailingOmitted != 6 {
			t.Errorf("live %v: %d signals, %d folded, %d released (%d omitted), %d failing (%d omitted)", b.live, len(in.Signals), in.SignalsFolded,
				len(in.Released), in.ReleasedOmitted, len(in.Failing), in.FailingOmitted)
		}
		if b.live {
			if len(in.Timeline) != 0 || len(in.Failing[1].Process.Cmdline) != 0 || len(in.Signals[0].Sender.Cmdline) != 0 {
				t.Errorf("a live builder keeps a timeline (%d) or command lines", len(in.Timeline))
			}
		} else if want := MaxTimeline + 2 + MaxReleased; len(in.Timeline) != want || in.TimelineOmitted != 1500+1+MaxFailing+5-MaxTimeline {
			// Failures past the cap are omitted; the signal is listed
			// once and folded in one entry; releases past their cap
			// are counted, not marked.
			t.Errorf("timeline %d entries, %d omitted; want %d and %d", len(in.Timeline), in.TimelineOmitted, want, 1500+1+MaxFailing+5-MaxTimeline)
		}
	}
	b := NewLiveBuilder()
	b.Quiet = 24 * time.Hour
	b.Add(failure(t0, 80, 7))
	b.Add(&events.Recovered{Header: events.Header{Type: events.TypeRecovered, Version: 1, Time: t0.Add(2 * time.Hour), Host: "h"}, Proto: "tcp", Netns: 1, Port: 80})
	if b.IsOpen(k) || len(b.Finish(t0.Add(3*time.Hour))) != 0 {
		t.Errorf("a live builder keeps an ended incident")
	}
	for p := range MaxOpen + 10 {
		b.Add(failure(t0, uint16(1000+p), 7))
	}
	if u := b.TakeUntracked(); len(b.Open()) != MaxOpen || len(u) != 10 || u[0].Reason != events.UntrackedFull || u[0].Table != events.UntrackedIncidents {
		t.Errorf("%d open, %d untracked (%+v); want %d and 10, the table full", len(b.Open()), len(u), u, MaxOpen)
	}
}

// No user crowds out another: a user gets MaxOpenPerUser incidents, the
// next are refused (once per port, until the quiet gap), users together
// leave ReservedOpen to root, and the --port ports may use it; an
// incident that ends frees its place.
func TestBuilderQuotas(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewLiveBuilder()
	b.Protected = func(port uint16) bool { return port == 80 }
	as := func(uid uint32, port uint16, at time.Time) *events.Failure {
		f := failure(at, port, int(uid)+1)
		f.Process.UID = uid
		return f
	}
	for p := range MaxOpenPerUser + 5 {
		b.Add(as(65534, uint16(10000+p), t0))
	}
	b.Add(as(65534, 10000+MaxOpenPerUser, t0.Add(time.Second))) // said already
	u := b.TakeUntracked()
	if len(b.Open()) != MaxOpenPerUser || len(u) != 5 || u[0].Reason != events.UntrackedUserQuota || u[0].UID != 65534 || u[0].Limit != MaxOpenPerUser {
		t.Fatalf("%d open, untracked %+v: want %d open and 5 refused for the user's quota", len(b.Open()), u, MaxOpenPerUser)
	}
	// Other users fill the table but the reserve.
	port := uint16(20000)
	for uid := uint32(1); len(b.Open()) < MaxOpen-ReservedOpen; uid++ {
		for range MaxOpenPerUser {
			if len(b.Open()) < MaxOpen-ReservedOpen {
				b.Add(as(uid, port, t0))
				port++
			}
		}
	}
	b.Add(as(999, 30000, t0))
	b.Add(as(999, 80, t0))
	b.Add(as(0, 30001, t0))
	u = b.TakeUntracked()
	if len(u) != 1 || u[0].Port != 30000 || u[0].Reason != events.UntrackedFull || u[0].Limit != MaxOpen-ReservedOpen {
		t.Errorf("untracked %+v: want only user 999's port 30000 refused, the table full but for the reserve", u)
	}
	for _, port := range []uint16{80, 30001} {
		if !b.IsOpen(Key{"h", 1, "tcp", port}) {
			t.Errorf("port %d (root's, or a --port port) has no incident", port)
		}
	}
	// The quiet gap ends the first user's incidents: room again.
	later := t0.Add(time.Minute)
	for _, a := range b.Expire(later, nil) {
		b.Add(a)
	}
	b.Add(as(65534, 40000, later))
	if u := b.TakeUntracked(); len(u) != 0 || !b.IsOpen(Key{"h", 1, "tcp", 40000}) {
		t.Errorf("after the quiet gap the user's new incident was refused: %+v", u)
	}
}

// Nobody tries any more: two attempts further apart than the quiet gap
// are two incidents, the first abandoned when its last attempt was; the
// gap is the one the session's start record says; the tracer's abandoned
// record ends only the incident it names; an incident whose trace goes
// on quiet past the gap ends abandoned, not open.
func TestBuilderQuietGap(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	all := Build([]events.Record{
		&events.Start{Header: events.Header{Type: events.TypeStart, Version: 1, Time: t0, Host: "h"}, IncidentQuietMS: 5000},
		failure(t0.Add(time.Second), 80, 7),
		failure(t0.Add(4*time.Second), 80, 7), // 3 s: the same incident
		failure(t0.Add(24*time.Second), 80, 8),
		&events.Stop{Header: events.Header{Type: events.TypeStop, Version: 1, Time: t0.Add(60 * time.Second), Host: "h"}},
	})
	if len(all) != 2 {
		t.Fatalf("%d incidents, want 2", len(all))
	}
	if a := all[0]; a.State != events.IncidentAbandoned || a.AbandonedReason != events.AbandonedQuiet || a.Attempts != 2 || a.OutageMS != 3000 {
		t.Errorf("first incident: state %s (%s), %d attempts, %d ms; want abandoned (quiet) after 2 attempts in 3000 ms", a.State, a.AbandonedReason, a.Attempts, a.OutageMS)
	}
	if b := all[1]; b.State != events.IncidentAbandoned || b.Attempts != 1 || b.Failing[0].Process.PID != 8 {
		t.Errorf("second incident: state %s, %d attempts; want abandoned at the stop, quiet for 36 s", b.State, b.Attempts)
	}

	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	b.Add(&events.Abandoned{Header: events.Header{Type: events.TypeAbandoned, Version: 1, Time: t0.Add(3 * time.Second), Host: "h"}, Proto: "tcp", Netns: 1, Port: 80,
		Start: t0.Add(-time.Hour), Reason: events.AbandonedExited})
	if !b.IsOpen(Key{"h", 1, "tcp", 80}) {
		t.Errorf("an abandoned record of another incident (an earlier start) ended this one")
	}
	b.Add(&events.Abandoned{Header: events.Header{Type: events.TypeAbandoned, Version: 1, Time: t0.Add(3 * time.Second), Host: "h"}, Proto: "tcp", Netns: 1, Port: 80,
		Start: t0, LastAttempt: t0, Reason: events.AbandonedExited, QuietMS: 10000})
	if got := b.Finish(t0.Add(5 * time.Second)); len(got) != 1 || got[0].State != events.IncidentAbandoned || got[0].AbandonedReason != events.AbandonedExited {
		t.Errorf("incidents %+v: want one, abandoned because its processes exited", got)
	}
}

// Records of another port, another namespace or another host stay out of
// an incident; a stop record ends the incidents of its host only.
func TestBuilderKeys(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	other := failure(t0, 80, 8)
	other.Process.Netns = 2
	b.Add(other)
	b.Add(&events.Signal{Header: events.Header{Type: events.TypeSignal, Version: 1, Time: t0.Add(time.Second), Host: "h"}, Signal: "SIGTERM", Proto: "tcp", Netns: 2, Port: 80})
	b.Add(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: 1, Time: t0.Add(2 * time.Second), Host: "elsewhere"}})
	if len(b.Open()) != 2 {
		t.Fatalf("%d open, want 2 (one per namespace; another host's stop ends neither)", len(b.Open()))
	}
	b.Add(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: 1, Time: t0.Add(3 * time.Second), Host: "h"}})
	all := b.Finish(t0.Add(time.Hour))
	if len(all) != 2 || len(all[0].Signals) != 0 || len(all[1].Signals) != 1 || all[0].State != events.IncidentOpen || all[0].OutageMS != 3000 {
		t.Errorf("incidents %+v", all)
	}
}

// A crafted log cannot steer the terminal of whoever reads the report:
// control characters in any field come out escaped.
func TestTextIsTerminalSafe(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	f := failure(t0, 80, 7)
	f.Errno = "EADDRINUSE\x1b[2J"
	f.Diagnosis = "held\x9b31m by \x07x"
	f.Process.Comm = "evil\rname"
	rep := &events.Repeats{Header: events.Header{Type: events.TypeRepeats, Version: 1, Time: t0.Add(time.Second), Host: "h"}, Count: 2, PID: 7, Comm: "x\x1b]0;pwned\x07", Proto: "tcp", Port: 80}
	var b strings.Builder
	WriteText(&b, Build([]events.Record{f, rep}))
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\r\u009b") {
		t.Errorf("raw control characters in the report:\n%q", out)
	}
	for _, want := range []string{`EADDRINUSE\x1b[2J`, `\x1b]0;pwned\x07`, `held\x9b31m`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %s:\n%s", want, out)
		}
	}
}

// A lane's label cuts a long escaped comm between escapes, never inside
// one ("\x1" would read as a different byte).
func TestHTMLLabelCutsBetweenEscapes(t *testing.T) {
	f := failure(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), 80, 41943)
	f.Process.Comm = strings.Repeat("\x1b", 7)
	var b strings.Builder
	if err := WriteHTML(&b, Build([]events.Record{f}), "test", Skipped{}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if bad := regexp.MustCompile(`\\x(?:[0-9a-f][^0-9a-f]|[^0-9a-f])`).FindString(page); bad != "" {
		t.Errorf("an escape cut short in the page: %q", bad)
	}
	if !strings.Contains(page, `failing: 41943 \x1b\x1b\x1b...`) {
		t.Errorf("the failing lane's label is not the cut comm:\n%s", page)
	}
}
