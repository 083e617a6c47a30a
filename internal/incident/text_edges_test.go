package incident

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The timeline says each record in one line: a failure with its first
// holder or its TIME_WAIT count, folded repeats with the span they
// happened in (clipped to the process's first failure and the record's
// time), a release with how long it held the port, the connections reset
// and a poll's precision, and a recovery by the process that failed.
func TestTimelineLines(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	f := failure(t0, 80, 7)
	f.Syscall, f.Process.Comm = "bind", "app"
	f.Holders = []events.Holder{{State: "LISTEN", Addr: "0.0.0.0", Port: 80, Processes: []events.Process{{PID: 9, Comm: "old"}}}}
	b.Add(f)
	tw := failure(t0.Add(time.Second), 80, 7)
	tw.Syscall, tw.Process.Comm = "bind", "app"
	tw.TimeWait = &events.TimeWait{Count: 2, MaxRemainingMS: 100}
	b.Add(tw)
	r := &events.Repeats{Count: 3, PID: 7, Comm: "app", Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: 80,
		First: t0.Add(-time.Second), Last: t0.Add(9 * time.Second)}
	r.Time, r.Host = t0.Add(2*time.Second), "h"
	b.Add(r)
	one := &events.Repeats{Count: 1, PID: 7, Comm: "app", Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: 80}
	one.Time, one.Host = t0.Add(2500*time.Millisecond), "h"
	b.Add(one)
	rel := &events.Released{Proto: "tcp", Netns: 1, Port: 80, State: "LISTEN", How: events.HowClose, Holder: &events.Process{PID: 9, Comm: "old"},
		HeldMS: 1500, ResetConnections: &events.ImpactCount{Count: 1}, Source: events.SourcePoll, PrecisionMS: 50}
	rel.Time, rel.Host = t0.Add(3*time.Second), "h"
	b.Add(rel)
	gone := &events.Released{Proto: "tcp", Netns: 1, Port: 80, State: "TIME_WAIT", How: events.HowClose, ResetConnections: &events.ImpactCount{}}
	gone.Time, gone.Host = t0.Add(3500*time.Millisecond), "h"
	b.Add(gone)
	rec := recovered(t0.Add(4*time.Second), 7)
	rec.Syscall, rec.SameProcess, rec.Attempts, rec.Process.Comm = "listen", true, 1, "app"
	b.Add(rec)
	in := b.Finish(t0.Add(time.Minute))[0]
	var got []string
	for _, e := range in.Timeline {
		got = append(got, e.Text)
	}
	want := []string{
		"EADDRINUSE bind by pid 7 (app) <- held by pid 9 (old) LISTEN",
		"EADDRINUSE bind by pid 7 (app) <- 2 TIME_WAIT sockets",
		"3 more EADDRINUSE bind by pid 7 (app), folded, between +0.000s and +2.000s",
		"1 more EADDRINUSE bind by pid 7 (app), folded",
		"pid 9 (old) let go of the port: closed, held 1.5s; 1 connection in its queue reset (seen by poll, within 50ms)",
		"the TIME_WAIT socket let go of the port: closed",
		"listen by pid 7 (app) (the same process, retrying) after 1 attempt; " + events.DurationsText(in.Durations),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A repeats span is clipped to [from, at], and never ends before it
// starts; a record without one has none.
func TestRepeatsSpan(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, c := range []struct {
		first, last, from, to time.Time
		wantFirst, wantLast   time.Time
		ok                    bool
	}{
		{at(2), at(4), at(1), at(5), at(2), at(4), true},
		{at(0), at(9), at(1), at(5), at(1), at(5), true},
		{at(0), at(0), at(1), at(5), at(1), at(1), true}, // ended before the first failure: a point
		{at(1), at(1), at(1), at(1), at(1), at(1), true},
		{time.Time{}, at(4), at(1), at(5), time.Time{}, time.Time{}, false},
		{at(2), time.Time{}, at(1), at(5), time.Time{}, time.Time{}, false},
	} {
		f, l, ok := RepeatsSpan(c.first, c.last, c.from, c.to)
		if !f.Equal(c.wantFirst) || !l.Equal(c.wantLast) || ok != c.ok {
			t.Errorf("RepeatsSpan(%v, %v, %v, %v) = %v, %v, %v; want %v, %v, %v", c.first, c.last, c.from, c.to, f, l, ok, c.wantFirst, c.wantLast, c.ok)
		}
	}
}
