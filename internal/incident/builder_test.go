package incident

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

func failure(at time.Time, port uint16, pid int) *events.Failure {
	return &events.Failure{Type: events.TypeFailure, Version: 1, Time: at, Host: "h", Proto: "tcp", Port: port,
		Errno: "EADDRINUSE", Process: events.Process{PID: pid, Netns: 1}}
}

// A port that fails for days keeps counting attempts, but its timeline
// stops growing; a live builder forgets ended incidents and caps the open
// ones.
func TestBuilderBounds(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewLiveBuilder()
	b.Quiet = 24 * time.Hour
	for i := range MaxTimeline + 500 {
		b.Add(failure(t0.Add(time.Duration(i)*time.Second), 80, 7))
	}
	b.Add(&events.Repeats{Type: events.TypeRepeats, Version: 1, Time: t0.Add(time.Hour), Host: "h", Count: 40, PID: 7, Proto: "tcp", Port: 80})
	k := Key{"h", 1, "tcp", 80}
	attempts, failed := b.Attempts(k, 7)
	if _, other := b.Attempts(k, 8); attempts != MaxTimeline+540 || !failed || other {
		t.Errorf("attempts %d (pid 7 failed: %v, pid 8: %v), want %d by pid 7", attempts, failed, other, MaxTimeline+540)
	}
	if in := b.open[k].in; len(in.Timeline) != MaxTimeline || in.TimelineOmitted != 501 {
		t.Errorf("timeline %d entries, %d omitted; want %d and 501", len(in.Timeline), in.TimelineOmitted, MaxTimeline)
	}
	b.Add(&events.Recovered{Type: events.TypeRecovered, Version: 1, Time: t0.Add(2 * time.Hour), Host: "h", Proto: "tcp", Netns: 1, Port: 80})
	if b.IsOpen(k) || len(b.Finish(t0.Add(3*time.Hour))) != 0 {
		t.Errorf("a live builder keeps an ended incident")
	}
	for p := range MaxOpen + 10 {
		b.Add(failure(t0, uint16(1000+p), 7))
	}
	if len(b.Open()) != MaxOpen || b.Untracked != 10 {
		t.Errorf("%d open, %d untracked; want %d and 10", len(b.Open()), b.Untracked, MaxOpen)
	}
}

// Nobody tries any more: two attempts further apart than the quiet gap
// are two incidents, the first abandoned when its last attempt was; the
// gap is the one the session's start record says; the tracer's abandoned
// record ends only the incident it names; an incident whose trace goes
// on quiet past the gap ends abandoned, not open.
func TestBuilderQuietGap(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	all := Build([]any{
		&events.Start{Type: events.TypeStart, Version: 1, Time: t0, Host: "h", IncidentQuietMS: 5000},
		failure(t0.Add(time.Second), 80, 7),
		failure(t0.Add(4*time.Second), 80, 7), // 3 s: the same incident
		failure(t0.Add(24*time.Second), 80, 8),
		&events.Stop{Type: events.TypeStop, Version: 1, Time: t0.Add(60 * time.Second), Host: "h"},
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
	b.Add(&events.Abandoned{Type: events.TypeAbandoned, Version: 1, Time: t0.Add(3 * time.Second), Host: "h", Proto: "tcp", Netns: 1, Port: 80,
		Start: t0.Add(-time.Hour), Reason: events.AbandonedExited})
	if !b.IsOpen(Key{"h", 1, "tcp", 80}) {
		t.Errorf("an abandoned record of another incident (an earlier start) ended this one")
	}
	b.Add(&events.Abandoned{Type: events.TypeAbandoned, Version: 1, Time: t0.Add(3 * time.Second), Host: "h", Proto: "tcp", Netns: 1, Port: 80,
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
	b.Add(&events.Signal{Type: events.TypeSignal, Version: 1, Time: t0.Add(time.Second), Host: "h", Signal: "SIGTERM", Proto: "tcp", Netns: 2, Port: 80})
	b.Add(&events.Stop{Type: events.TypeStop, Version: 1, Time: t0.Add(2 * time.Second), Host: "elsewhere"})
	if len(b.Open()) != 2 {
		t.Fatalf("%d open, want 2 (one per namespace; another host's stop ends neither)", len(b.Open()))
	}
	b.Add(&events.Stop{Type: events.TypeStop, Version: 1, Time: t0.Add(3 * time.Second), Host: "h"})
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
	rep := &events.Repeats{Type: events.TypeRepeats, Version: 1, Time: t0.Add(time.Second), Host: "h", Count: 2, PID: 7, Comm: "x\x1b]0;pwned\x07", Proto: "tcp", Port: 80}
	var b strings.Builder
	WriteText(&b, Build([]any{f, rep}))
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
	if err := WriteHTML(&b, Build([]any{f}), "test", Skipped{}); err != nil {
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
