package incident

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// A start record without a quiet gap of its own puts its host back on the
// builder's: a session's --incident-quiet does not outlive it.
func TestStartWithoutQuietGapResets(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	first := &events.Start{IncidentQuietMS: 1000}
	first.Time, first.Host = t0, "h"
	second := &events.Start{}
	second.Time, second.Host = t0.Add(time.Second), "h"
	b := NewBuilder()
	b.Add(first)
	b.Add(second)
	// 5 s apart: one incident under DefaultQuiet (10 s), two under 1 s.
	b.Add(failure(t0.Add(2*time.Second), 80, 7))
	b.Add(failure(t0.Add(7*time.Second), 80, 7))
	if all := b.Finish(t0.Add(8 * time.Second)); len(all) != 1 || all[0].Attempts != 2 {
		t.Errorf("%d incidents, want one of 2 attempts under the default quiet gap", len(all))
	}
}

// An incident still open when the trace is finished ends then: open, its
// end and outage at the finish, its timeline closed by an end mark.
func TestFinishEndsOpenIncidents(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	b.Add(failure(t0.Add(time.Second), 80, 7))
	all := b.Finish(t0.Add(3 * time.Second))
	if len(all) != 1 {
		t.Fatalf("%d incidents, want 1", len(all))
	}
	in := all[0]
	if in.State != events.IncidentOpen || !in.End.Equal(t0.Add(3*time.Second)) || in.OutageMS != 3000 {
		t.Errorf("state %s, end %v, outage %d ms; want open, ended at the finish, 3000 ms", in.State, in.End, in.OutageMS)
	}
	if n := len(in.Timeline); n == 0 || in.Timeline[n-1].Kind != events.MarkEnd {
		t.Errorf("timeline %+v: want it closed by an end mark", in.Timeline)
	}
	if b.IsOpen(Key{"h", 1, "tcp", 80}) {
		t.Errorf("the incident is still open after Finish")
	}
}

// An abandoned record's quiet gap is what the timeline says nobody tried
// for.
func TestAbandonedQuietInTimeline(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	a := &events.Abandoned{Proto: "tcp", Netns: 1, Port: 80, Start: t0, LastAttempt: t0, Reason: events.AbandonedQuiet, QuietMS: 4000}
	a.Time, a.Host = t0.Add(4*time.Second), "h"
	b.Add(a)
	all := b.Finish(t0.Add(time.Minute))
	if len(all) != 1 || all[0].State != events.IncidentAbandoned {
		t.Fatalf("incidents %+v: want one, abandoned", all)
	}
	want := "abandoned: " + events.AbandonedWhy(events.AbandonedQuiet, 4000)
	found := false
	for _, e := range all[0].Timeline {
		found = found || (e.Kind == events.MarkAbandoned && strings.HasPrefix(e.Text, want))
	}
	if !found {
		t.Errorf("timeline %+v: no abandoned mark saying %q", all[0].Timeline, want)
	}
}

// The first incident_untracked record of an incident says why it was not
// tracked; a later one for the same incident changes nothing.
func TestUntrackedSaidOnce(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	for i, why := range []struct{ table, reason string }{
		{events.UntrackedKernel, events.UntrackedFull},
		{events.UntrackedIncidents, events.UntrackedUserQuota},
	} {
		u := &events.IncidentUntracked{Proto: "tcp", Netns: 1, Port: 80, Table: why.table, Reason: why.reason}
		u.Time, u.Host = t0.Add(time.Duration(i+1)*time.Second), "h"
		b.Add(u)
	}
	all := b.Finish(t0.Add(5 * time.Second))
	if len(all) != 1 {
		t.Fatalf("%d incidents, want 1", len(all))
	}
	in := all[0]
	if in.Untracked != events.UntrackedKernel || in.UntrackedReason != events.UntrackedFull || in.State != events.IncidentNotTracked {
		t.Errorf("untracked %q (%q), state %s; want the first record's kernel (full), not tracked", in.Untracked, in.UntrackedReason, in.State)
	}
	marks := 0
	for _, e := range in.Timeline {
		if e.Kind == events.MarkUntracked {
			marks++
		}
	}
	if marks != 1 {
		t.Errorf("%d untracked marks, want 1", marks)
	}
}

// Only a holder with a process must be seen to let go before the fix
// becomes advice for next time: a holder without one (a TIME_WAIT
// socket) does not keep the kill commands, a holder whose pid is not among
// the released does.
func TestAdviceHoldersWithoutProcesses(t *testing.T) {
	hint := "Use another port, or stop the holder (its service, or kill 7)."
	in := &events.Incident{State: events.IncidentOpen, Hint: hint,
		Holders:  []events.IncidentHolder{{}, {Processes: []events.Process{{PID: 7}}}},
		Released: []*events.Released{{Holder: &events.Process{PID: 7}}}}
	if label, text := Advice(in); label != "next time" || text != "Use another port, or stop the holder (its service)." {
		t.Errorf("holder without process and released pid 7: %s: %s", label, text)
	}
	in.Released = []*events.Released{{Closer: &events.Process{PID: 9}}}
	if label, text := Advice(in); label != "fix" || text != hint {
		t.Errorf("pid 7 never released: %s: %s", label, text)
	}
}

// Repeats the tracer harvests for a recovery are reported just after it
// but were folded before it: the timeline puts them at the recovery, not
// after it; other marks keep their time.
func TestRepeatsHarvestedAtRecovery(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	r := &events.Repeats{Count: 5, PID: 7, Proto: "tcp", Port: 80}
	r.Time, r.Host = t0.Add(1500*time.Millisecond), "h"
	b.Add(r)
	rec := &events.Recovered{Proto: "tcp", Netns: 1, Port: 80, Process: events.Process{PID: 7}}
	rec.Time, rec.Host = t0.Add(time.Second), "h"
	b.Add(rec)
	all := b.Finish(t0.Add(time.Minute))
	if len(all) != 1 || all[0].State != events.IncidentRecovered {
		t.Fatalf("incidents %+v: want one, recovered", all)
	}
	kinds := map[string]int64{}
	for _, e := range all[0].Timeline {
		kinds[e.Kind] = e.AtMS
		if e.Kind == events.MarkRepeats && !e.Time.Equal(rec.Time) {
			t.Errorf("repeats mark at %v, want at the recovery %v", e.Time, rec.Time)
		}
	}
	if kinds[events.MarkRepeats] != 1000 || kinds[events.MarkFailure] != 0 || kinds[events.MarkRecovered] != 1000 {
		t.Errorf("timeline offsets %v: want the failure at 0 ms, the repeats and the recovery at 1000 ms", kinds)
	}
}

// A failing process's errnos are listed once each, at most 8, while its
// attempts all count.
func TestFailingProcessErrnos(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	errnos := []string{"EADDRINUSE", "EACCES", "EADDRNOTAVAIL", "EINVAL", "EPERM", "ENOBUFS", "ENOMEM", "EAFNOSUPPORT", "EOPNOTSUPP", "EISCONN"}
	for i, e := range append(errnos, errnos[0]) {
		f := failure(t0.Add(time.Duration(i)*time.Millisecond), 80, 7)
		f.Errno = e
		b.Add(f)
	}
	all := b.Finish(t0.Add(time.Second))
	if len(all) != 1 || len(all[0].Failing) != 1 {
		t.Fatalf("incidents %+v: want one with one failing process", all)
	}
	p := all[0].Failing[0]
	if p.Attempts != 11 || strings.Join(p.Errnos, ",") != strings.Join(errnos[:8], ",") {
		t.Errorf("failing process: %d attempts, errnos %q; want 11 and the first 8 once each", p.Attempts, p.Errnos)
	}
}

// A port refused an incident is said once per quiet gap: again at the gap
// it is not, past it it is; and the ports said are bounded (MaxOpen),
// whatever a user makes fail.
func TestRefusedSaidOncePerGap(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewLiveBuilder()
	b.Quiet = time.Hour // the user's incidents stay open throughout
	user := func(at time.Time, port uint16) *events.Failure {
		f := failure(at, port, 7)
		f.Process.UID = 65534
		return f
	}
	for p := range MaxOpenPerUser {
		b.Add(user(t0, uint16(10000+p)))
	}
	refused := func(at time.Time, port uint16) int {
		b.Add(user(at, port))
		return len(b.TakeUntracked())
	}
	if n := refused(t0, 50000); n != 1 {
		t.Fatalf("%d incident_untracked records for a user over quota, want 1", n)
	}
	if n := refused(t0.Add(time.Hour), 50000); n != 0 {
		t.Errorf("said again at the quiet gap (%d records)", n)
	}
	if n := refused(t0.Add(2*time.Hour+time.Millisecond), 50000); n != 1 {
		t.Errorf("%d records a quiet gap after the last one, want 1", n)
	}
	for p := range MaxOpen + 100 {
		b.Add(user(t0.Add(2*time.Hour), uint16(20000+p)))
	}
	if len(b.refused) > MaxOpen {
		t.Errorf("%d refused ports remembered, want at most %d", len(b.refused), MaxOpen)
	}
}
