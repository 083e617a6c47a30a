package incident

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

func ms(v int64) *int64 { return &v }

// incidentIn is an incident on tcp 0.0.0.0:80 of host h in state, after a
// contention of one second.
func incidentIn(state string, attempts uint64) *events.Incident {
	in := &events.Incident{Proto: "tcp", Addr: "0.0.0.0", Port: 80, State: state, Attempts: attempts,
		Start: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	in.Host = "h"
	in.ContentionMS = 1000
	return in
}

// An incident's title says where, how many attempts, and how it ended in
// its state's words.
func TestTitleStates(t *testing.T) {
	rec := incidentIn(events.IncidentRecovered, 1)
	known := incidentIn(events.IncidentRecovered, 2)
	known.Netns, known.UnservedMS = 5, ms(200)
	open := incidentIn(events.IncidentOpen, 3)
	exited := incidentIn(events.IncidentAbandoned, 3)
	exited.AbandonedReason = events.AbandonedExited
	quiet := incidentIn(events.IncidentAbandoned, 3)
	quiet.AbandonedReason = events.AbandonedQuiet
	untracked := incidentIn(events.IncidentNotTracked, 3)
	untracked.Untracked, untracked.UntrackedReason = events.UntrackedKernel, events.UntrackedFull
	for _, c := range []struct {
		in   *events.Incident
		want string
	}{
		{rec, "incident on tcp 0.0.0.0:80, host h: 1 failed attempt, recovered: contention 1s (its release was not seen: the outage is not known)"},
		{known, "incident on tcp 0.0.0.0:80 (netns 5), host h: 2 failed attempts, recovered: contention 1s, outage 200ms (nothing listened)"},
		{open, "incident on tcp 0.0.0.0:80, host h: 3 failed attempts, not recovered when the trace ended, 1s after the first failure"},
		{exited, "incident on tcp 0.0.0.0:80, host h: 3 failed attempts, abandoned, not recovered: every failing process exited (the last attempt 1s after the first)"},
		{quiet, "incident on tcp 0.0.0.0:80, host h: 3 failed attempts, abandoned, not recovered: nobody tried any more (the last attempt 1s after the first)"},
		{untracked, "incident on tcp 0.0.0.0:80, host h: 3 failed attempts, not tracked: " + events.UntrackedWhy(events.UntrackedKernel, events.UntrackedFull) +
			" (its signals, release and recovery were not recorded); 1s after the first failure"},
	} {
		if got := Title(c.in); got != c.want {
			t.Errorf("Title:\n got %q\nwant %q", got, c.want)
		}
	}
}

// The durations line names each span as the timeline page does, and says
// what is not known rather than leave it out.
func TestDurationsAndClientsLines(t *testing.T) {
	rec := incidentIn(events.IncidentRecovered, 1)
	drained := incidentIn(events.IncidentRecovered, 1)
	drained.UnservedMS, drained.DrainMS = ms(200), ms(300)
	drained.ResetConnections = &events.ImpactCount{Count: 2}
	open := incidentIn(events.IncidentOpen, 1)
	untracked := incidentIn(events.IncidentNotTracked, 1)
	untracked.Untracked = events.UntrackedIncidents
	abandoned := incidentIn(events.IncidentAbandoned, 1)
	abandoned.ResetConnections = &events.ImpactCount{}
	const notMeasured = "clients: refused connections and dropped datagrams not measured (a kernel before 5.17, or the log of a bindwatch that did not count them)"
	for _, c := range []struct {
		name               string
		in                 *events.Incident
		durations, clients string
	}{
		{"recovered", rec, "durations: contention 1s (first failure to recovery: someone could not get the port), outage not known (the holder's release was not seen)", notMeasured},
		{"drained", drained, "durations: contention 1s (first failure to recovery: someone could not get the port), outage 200ms (release to recovery: nothing listened), drain 300ms (first signal to release)",
			"clients: 2 connections in the old listener's queue reset at release"},
		{"open", open, "durations: contention 1s (first failure to last attempt; not recovered)", ""},
		{"untracked", untracked, "durations: contention 1s (first failure to last attempt; its recovery was not tracked)", ""},
		{"abandoned", abandoned, "durations: contention 1s (first failure to last attempt; not recovered)", notMeasured},
	} {
		if got := durationsLine(c.in); got != c.durations {
			t.Errorf("%s: durations line\n got %q\nwant %q", c.name, got, c.durations)
		}
		if got := clientsLine(c.in); got != c.clients {
			t.Errorf("%s: clients line\n got %q\nwant %q", c.name, got, c.clients)
		}
	}
}

// The TIME_WAIT note says how a TIME_WAIT incident ended: expired, taken
// over by a socket that could reuse the address, or still waiting; with
// when the TIME_WAIT began and ends where it is known.
func TestTimeWaitNote(t *testing.T) {
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	if got := timeWaitNote(incidentIn(events.IncidentOpen, 1)); got != "" {
		t.Errorf("no TIME_WAIT holder: %q", got)
	}
	in := incidentIn(events.IncidentOpen, 1)
	in.Holders = []events.IncidentHolder{{State: "LISTEN"}, {State: "TIME_WAIT", Expires: start.Add(30 * time.Second)}, {State: "TIME_WAIT"}}
	when := " (TIME_WAIT since " + signedOffset(-30000) + ", expires at " + signedOffset(30000) + ")"
	if got, want := timeWaitNote(in), "TIME_WAIT: the sockets had not expired when the trace ended"+when; got != want {
		t.Errorf("open:\n got %q\nwant %q", got, want)
	}
	in.Recovered = &events.Recovered{}
	if got, want := timeWaitNote(in), "TIME_WAIT: recovered before the TIME_WAIT expired: the new socket could reuse the address (SO_REUSEADDR on it and on the old socket)"+when; got != want {
		t.Errorf("recovered:\n got %q\nwant %q", got, want)
	}
	closed := &events.Released{How: events.HowClose}
	closed.Time = start.Add(time.Second)
	expired := &events.Released{How: events.HowExpired}
	expired.Time = start.Add(2 * time.Second)
	in.Released = []*events.Released{closed, expired}
	if got, want := timeWaitNote(in), "TIME_WAIT: the sockets expired (the kernel keeps them 60 s), and then the port was free (at +2.000s)"; got != want {
		t.Errorf("expired:\n got %q\nwant %q", got, want)
	}
}

// Anything skipped, of any kind or several, is something skipped.
func TestSkippedAny(t *testing.T) {
	for _, s := range []Skipped{
		{Malformed: 1, Newer: 1}, {Newer: 1, Truncated: 1}, {Truncated: 1, Unreadable: []string{"a"}},
		{Unreadable: []string{"a"}, Refused: []string{"b"}}, {Refused: []string{"b"}},
	} {
		if !s.Any() {
			t.Errorf("%+v: Any() = false", s)
		}
	}
	if (Skipped{}).Any() {
		t.Errorf("nothing skipped: Any() = true")
	}
}

// A report's text: one block per incident, a blank line between them and
// a summary first when there are several; the lines of what was not seen
// or not listed only when there is such a thing.
func TestWriteTextBlocks(t *testing.T) {
	in := incidentIn(events.IncidentRecovered, 1)
	in.End = in.Start.Add(time.Second)
	in.Holders = []events.IncidentHolder{{State: "LISTEN", Addr: "0.0.0.0", Processes: []events.Process{{PID: 9, Comm: "old"}}}}
	in.Diagnosis, in.Hint = "old (pid 9) holds it.", "Use another port."
	var one strings.Builder
	if err := WriteText(&one, []*events.Incident{in}); err != nil {
		t.Fatal(err)
	}
	text := one.String()
	for _, want := range []string{"incident on tcp 0.0.0.0:80", "  signals: none sent to the holder while the incident was open\n",
		"  clients: refused connections", "  why: old (pid 9) holds it.\n", "  next time: Use another port.\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	for _, not := range []string{"more process", "more, not listed", "released:", "TIME_WAIT:", "omitted", "\n\n"} {
		if strings.Contains(text, not) {
			t.Errorf("report has %q:\n%s", not, text)
		}
	}
	if !strings.HasPrefix(text, "incident on") {
		t.Errorf("one incident's report does not begin with it:\n%s", text)
	}
	signalled := *in
	signalled.Host = "g"
	signalled.Signals = []*events.Signal{{Signal: "SIGTERM"}}
	var two strings.Builder
	if err := WriteText(&two, []*events.Incident{in, &signalled}); err != nil {
		t.Fatal(err)
	}
	text = two.String()
	if strings.HasPrefix(text, "incident on") || !strings.Contains(text, "\n\nincident on tcp 0.0.0.0:80, host g") {
		t.Errorf("two incidents: want a summary first and a blank line between the blocks:\n%s", text)
	}
	if n := strings.Count(text, "signals: none sent"); n != 1 {
		t.Errorf("%d 'no signals' lines, want 1 (the signalled incident has none):\n%s", n, text)
	}
}
