package incident

import (
	"fmt"
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

// released is a port's release by holder (and closer, when not 0) at t.
func released(t time.Time, holder, closer int) *events.Released {
	r := &events.Released{Proto: "tcp", Netns: 1, Port: 80, Holder: &events.Process{PID: holder}}
	if closer != 0 {
		r.Closer = &events.Process{PID: closer}
	}
	r.Time, r.Host = t, "h"
	return r
}

func recovered(t time.Time, pid int) *events.Recovered {
	r := &events.Recovered{Proto: "tcp", Netns: 1, Port: 80, Process: events.Process{PID: pid}}
	r.Time, r.Host = t, "h"
	return r
}

// TIME_WAIT holders expire when the latest failure says the last of them
// on their address does: per address, never earlier than already seen;
// a failure that counted TIME_WAIT sockets without listing them adds one
// at its own address; a socket in another state has no expiry.
func TestTimeWaitExpiry(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	tw := func(at time.Duration, addr string, left int64) *events.Failure {
		f := failure(t0.Add(at), 80, 7)
		f.Holders = []events.Holder{
			{State: "LISTEN", Addr: "10.0.0.9", Port: 80, RemainingMS: 99_000, Processes: []events.Process{{PID: 9}}},
			{State: "TIME_WAIT", Addr: addr, Port: 80, RemainingMS: left, Processes: []events.Process{}},
		}
		return f
	}
	b.Add(tw(0, "10.0.0.1", 5000))
	b.Add(tw(time.Second, "10.0.0.1", 2000)) // expires earlier: the later time stands
	b.Add(tw(2*time.Second, "10.0.0.2", 0))  // no time left known
	b.Add(tw(3*time.Second, "10.0.0.3", 1000))
	counted := failure(t0.Add(4*time.Second), 80, 7)
	counted.Addr = "10.0.0.4"
	counted.TimeWait = &events.TimeWait{Count: 3, MaxRemainingMS: 7000}
	b.Add(counted)
	all := b.Finish(t0.Add(time.Minute))
	if len(all) != 1 {
		t.Fatalf("%d incidents, want 1", len(all))
	}
	want := map[string]time.Time{
		"LISTEN 10.0.0.9":    {},
		"TIME_WAIT 10.0.0.1": t0.Add(5 * time.Second),
		"TIME_WAIT 10.0.0.2": {},
		"TIME_WAIT 10.0.0.3": t0.Add(4 * time.Second),
		"TIME_WAIT 10.0.0.4": t0.Add(11 * time.Second),
	}
	got := map[string]time.Time{}
	for _, h := range all[0].Holders {
		got[h.State+" "+h.Addr] = h.Expires
	}
	if len(got) != len(want) {
		t.Errorf("holders %v, want %v", got, want)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !g.Equal(w) {
			t.Errorf("%s expires %v (listed %v), want %v", k, g, ok, w)
		}
	}
}

// An incident's diagnosis, hint and cause are the first a failure
// brought; failures without them do not blank them, later ones do not
// replace them.
func TestFirstDiagnosisStays(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	bare := failure(t0, 80, 7)
	first := failure(t0.Add(time.Second), 80, 7)
	first.Cause, first.Diagnosis, first.Hint = events.CausePortInUse, "held by nginx", "stop nginx"
	later := failure(t0.Add(2*time.Second), 80, 7)
	later.Cause, later.Diagnosis, later.Hint = events.CauseTimeWait, "TIME_WAIT", "wait"
	for _, f := range []*events.Failure{bare, first, later, failure(t0.Add(3*time.Second), 80, 7)} {
		b.Add(f)
	}
	in := b.Finish(t0.Add(time.Minute))[0]
	if in.Cause != events.CausePortInUse || in.Diagnosis != "held by nginx" || in.Hint != "stop nginx" {
		t.Errorf("cause %q, diagnosis %q, hint %q; want the first failure's that had them", in.Cause, in.Diagnosis, in.Hint)
	}
}

// A repeats record names no namespace: its folded failures go to the
// incident its process failed in, and to that process's attempts.
func TestRepeatsFindTheirIncident(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	other := failure(t0, 80, 8)
	other.Process.Netns = 2
	b.Add(other)
	r := &events.Repeats{Count: 40, PID: 8, Proto: "tcp", Port: 80}
	r.Time, r.Host = t0.Add(time.Second), "h"
	b.Add(r)
	for _, in := range b.Finish(t0.Add(2 * time.Second)) {
		want := uint64(1)
		if in.Netns == 2 {
			want = 41
		}
		if in.Attempts != want || len(in.Failing) != 1 || in.Failing[0].Attempts != want {
			t.Errorf("netns %d: %d attempts (%+v), want %d, all by its process", in.Netns, in.Attempts, in.Failing, want)
		}
	}
}

// An incident lists at most MaxHolders holders and counts the rest.
func TestHoldersCapped(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	for i := range MaxHolders + 3 {
		f := failure(t0.Add(time.Duration(i)*time.Millisecond), 80, 7)
		f.Holders = []events.Holder{{State: "LISTEN", Addr: "10.0.0.1", Port: 80, Processes: []events.Process{{PID: 1000 + i}}}}
		b.Add(f)
	}
	in := b.Finish(t0.Add(time.Minute))[0]
	if len(in.Holders) != MaxHolders || in.HoldersOmitted != 3 {
		t.Errorf("%d holders, %d omitted; want %d and 3", len(in.Holders), in.HoldersOmitted, MaxHolders)
	}
}

// An incident that ends gives its user's place back, one place each.
func TestEndedIncidentFreesOnePlace(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewLiveBuilder()
	b.Quiet = time.Hour
	user := func(port uint16) *events.Failure {
		f := failure(t0, port, 7)
		f.Process.UID = 65534
		f.Process.Netns = 1
		return f
	}
	for p := range MaxOpenPerUser {
		b.Add(user(uint16(10000 + p)))
	}
	r := recovered(t0.Add(time.Second), 7)
	r.Port = 10000
	b.Add(r)
	b.Add(user(20000))
	b.Add(user(20001))
	if u := b.TakeUntracked(); len(u) != 1 || u[0].Port != 20001 || !b.IsOpen(Key{"h", 1, "tcp", 20000}) {
		t.Errorf("after one incident ended: untracked %+v; want port 20000 tracked and 20001 refused", u)
	}
}

// A port recovered with its incident untracked stays recovered (only an
// unfinished one is "not tracked"); the outage is told only for a
// recovery; the timeline keeps marks of one millisecond in their order.
func TestEndStates(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	u := &events.IncidentUntracked{Proto: "tcp", Netns: 1, Port: 80, Table: events.UntrackedKernel, Reason: events.UntrackedFull}
	u.Time, u.Host = t0, "h"
	b.Add(u)
	b.Add(released(t0.Add(time.Second), 9, 0))
	b.Add(recovered(t0.Add(3*time.Second), 7))
	in := b.Finish(t0.Add(time.Minute))[0]
	if in.State != events.IncidentRecovered || in.UnservedMS == nil || *in.UnservedMS != 2000 {
		t.Errorf("state %s, unserved %v; want recovered with 2000 ms unserved", in.State, in.UnservedMS)
	}
	if in.Timeline[0].Kind != events.MarkFailure || in.Timeline[1].Kind != events.MarkUntracked {
		t.Errorf("timeline %+v: want the failure, then the untracked mark of the same millisecond", in.Timeline)
	}
	b = NewBuilder()
	b.Add(failure(t0, 80, 7))
	b.Add(released(t0.Add(time.Second), 9, 0))
	open := b.Finish(t0.Add(2 * time.Second))[0]
	if open.State != events.IncidentOpen || open.UnservedMS != nil {
		t.Errorf("open incident: state %s, unserved %v; want open, no outage told", open.State, open.UnservedMS)
	}
}

// The drain is from the first signal to the release by the process it
// was sent to; with one holder, the first release after the signal is its
// drain whoever released; with several, a release by another is not.
func TestDrainTime(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	root := events.Process{PID: 1, Comm: "systemd"}
	for _, c := range []struct {
		name    string
		holders int
		recs    []events.Record
		drain   int64 // -1: none
	}{
		{"released by the target", 2, []events.Record{released(t0.Add(500*time.Millisecond), 9, 0), signal(t0.Add(time.Second), "SIGTERM", root, 9),
			released(t0.Add(2*time.Second), 10, 0), released(t0.Add(3*time.Second), 9, 0)}, 2000},
		{"closed by the target", 2, []events.Record{signal(t0.Add(time.Second), "SIGTERM", root, 9), released(t0.Add(4*time.Second), 11, 9)}, 3000},
		{"one holder, another released", 1, []events.Record{signal(t0.Add(time.Second), "SIGTERM", root, 9), released(t0.Add(2*time.Second), 10, 0),
			released(t0.Add(3*time.Second), 12, 0)}, 1000},
		{"two holders, another released", 2, []events.Record{signal(t0.Add(time.Second), "SIGTERM", root, 9), released(t0.Add(2*time.Second), 10, 0)}, -1},
	} {
		b := NewBuilder()
		f := failure(t0, 80, 7)
		for i := range c.holders {
			f.Holders = append(f.Holders, events.Holder{State: "LISTEN", Addr: "0.0.0.0", Port: 80, Processes: []events.Process{{PID: 9 + i}}})
		}
		b.Add(f)
		for _, r := range c.recs {
			b.Add(r)
		}
		b.Add(recovered(t0.Add(5*time.Second), 7))
		in := b.Finish(t0.Add(time.Minute))[0]
		switch {
		case c.drain < 0 && in.DrainMS != nil:
			t.Errorf("%s: drain %d ms, want none", c.name, *in.DrainMS)
		case c.drain >= 0 && (in.DrainMS == nil || *in.DrainMS != c.drain):
			t.Errorf("%s: drain %v, want %d ms", c.name, in.DrainMS, c.drain)
		}
	}
}

// A spread is a group of incidents on two hosts or more, each host once;
// a group seen on one host is none; incidents without a failing process
// group by the rest of their key.
func TestSpreadsNeedTwoHosts(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	inc := func(host string, at time.Duration, port uint16, failing string) *events.Incident {
		in := &events.Incident{Host: host, Proto: "tcp", Port: port, Start: t0.Add(at), Cause: events.CausePortInUse,
			Holders: []events.IncidentHolder{{Processes: []events.Process{{Comm: "nginx"}}}}}
		if failing != "" {
			in.Failing = []events.IncidentProcess{{Process: events.Process{Comm: failing}}}
		}
		return in
	}
	spreads := Spreads([]*events.Incident{
		inc("b", 2*time.Second, 80, "app"), inc("a", time.Second, 80, "app"), inc("a", 3*time.Second, 80, "app"),
		inc("c", 0, 81, "app"),
		inc("d", 4*time.Second, 82, ""), inc("e", 5*time.Second, 82, ""),
	})
	var got []string
	for _, s := range spreads {
		var hosts []string
		for _, h := range s.Hosts {
			hosts = append(hosts, h.Host)
		}
		got = append(got, fmt.Sprintf("%d %q %s", s.Port, s.Failing, strings.Join(hosts, ",")))
	}
	if want := []string{`80 "app" a,b`, `82 "" d,e`}; strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("spreads %q, want %q", got, want)
	}
}
