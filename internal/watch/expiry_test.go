package watch

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// timeWaitLen is how long Linux keeps a TIME_WAIT socket: TCP_TIMEWAIT_LEN,
// fixed, no sysctl. timerSlack is how late the kernel's timer wheel may
// fire a timer that far ahead: an eighth-ish of it, at most 512 jiffies
// at HZ=100 (5.12 s).
const (
	timeWaitLen = 60 * time.Second
	timerSlack  = 6 * time.Second
)

// A TIME_WAIT holder left by a listener without SO_REUSEADDR: no socket
// can take the port — SO_REUSEADDR on the new one does not help — until
// the kernel drops it, a minute after the close. No kernel hook here
// reports that; the poll does: released, how expired, source poll, with
// its precision, no sooner than the minute. Then a fresh server gets the
// port (recovered), and the report says the sockets expired.
//
// The minute passes while the package's other tests run: the incident is
// set up first, then t.Parallel pauses the test until the serial tests
// are done (its session keeps polling meanwhile), so it adds no minute
// to the package's run unless the rest takes less than that. This file's
// name sorts before most of the package's: go test runs the tests in
// file-name order, so the minute starts early.
func TestIncidentTimeWaitExpired(t *testing.T) {
	port := testenv.FreePort(t)
	// One attempt, then nobody tries while the minute passes: a quiet gap
	// longer than that keeps the incident open (10 s would abandon it).
	// Longer than the package's serial tests too, which run before the
	// recovery below: in an emulated kernel they took past 3 minutes, and
	// the incident was abandoned just as the fresh server listened.
	// Its own network namespace only: a test run beside this one may use
	// the port number in a namespace of its own.
	cfg := onlyPort(port)
	cfg.Netns = testenv.Netns(t)
	s := startSessionQuiet(t, cfg, 15*time.Minute)
	before := time.Now()
	testenv.LeaveTimeWait(t, "127.0.0.1", port, false)
	left := time.Now()
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{ReuseAddr: true}, syscall.EADDRINUSE)
	f := s.waitFailure(port)
	t.Parallel()

	// The poll sees the expiry within its precision; 90 s leaves a slow
	// emulated kernel half a minute. Serial tests may have run longer.
	wait := max(time.Until(before.Add(90*time.Second)), 5*time.Second)
	st := s.waitReleased(port, wait)
	if len(st.released) != 1 {
		t.Fatalf("released %s: want one", recordsJSON(st.released))
	}
	rel := st.released[0]
	if rel.How != events.HowExpired || rel.Source != events.SourcePoll || rel.State != "TIME_WAIT" ||
		rel.Holder != nil || rel.Addr != "127.0.0.1" || rel.Proto != "tcp" {
		t.Errorf("released %+v: want the TIME_WAIT socket on 127.0.0.1, expired, seen by the poll", rel)
	}
	within(t, "released.precision_ms", rel.PrecisionMS, 1, 10000)
	precision := time.Duration(rel.PrecisionMS) * time.Millisecond
	// The socket expired between the poll before and this one, a minute
	// (and the timer wheel's slack) after it entered TIME_WAIT.
	within(t, "release after the TIME_WAIT began (ms)", rel.Time.Sub(before).Milliseconds(),
		(timeWaitLen - precision).Milliseconds(), (left.Sub(before) + timeWaitLen + timerSlack + precision).Milliseconds())
	if len(f.Holders) > 0 {
		t.Logf("the failure saw %d ms left; released %d ms after the failure (poll precision %d ms)",
			f.Holders[0].RemainingMS, rel.Time.Sub(f.Time).Milliseconds(), rel.PrecisionMS)
	}

	// Now the port is free, even for a socket without SO_REUSEADDR.
	fresh := testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", port))
	st = s.waitRecovered(port, 5*time.Second)
	if len(st.released) != 1 {
		t.Fatalf("released %s: want only the expiry", recordsJSON(st.released))
	}
	rel, rec := st.released[0], st.recovered[0]
	if rec.Process.PID != fresh.PID || rec.SameProcess || rec.Syscall != "listen" || rec.Attempts != 1 || rec.Source != events.SourceKernel {
		t.Errorf("recovered %+v: want the fresh server (pid %d), a new process, by listen() after 1 attempt", rec, fresh.PID)
	}
	if !rec.Time.After(rel.Time) {
		t.Errorf("recovered at %s, not after the release at %s", rec.Time, rel.Time)
	}
	if i, j := slices.Index(st.all, events.Record(rel)), slices.Index(st.all, events.Record(rec)); i < 0 || j < i {
		t.Errorf("the recovered record (#%d) was written before the released one (#%d)", j, i)
	}
	within(t, "recovered.outage_ms", rec.OutageMS, rel.Time.Sub(f.Time).Milliseconds(), rec.Time.Sub(f.Time).Milliseconds())

	// The incident tells it: the TIME_WAIT holder, its expiry before the
	// recovery, in the text report and in the incident JSON record.
	var in *events.Incident
	for _, i := range incident.Build(st.all) {
		if int(i.Port) == port {
			in = i
		}
	}
	if in == nil || in.State != events.IncidentRecovered || len(in.Holders) != 1 || in.Holders[0].Kind != "TIME_WAIT" {
		t.Fatalf("incident %+v: want recovered, held by TIME_WAIT", in)
	}
	var marks []string
	for _, e := range in.Timeline {
		if e.Kind != events.MarkFailure {
			marks = append(marks, e.Kind)
		}
	}
	if !slices.Equal(marks, []string{events.MarkReleased, events.MarkRecovered}) {
		t.Errorf("timeline after the failure: %v, want released then recovered", marks)
	}
	var b strings.Builder
	incident.WriteText(&b, []*events.Incident{in})
	for _, want := range []string{"TIME_WAIT expired (seen by poll, within", "TIME_WAIT: the sockets expired (the kernel keeps them 60 s), and then the port was free"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Released []map[string]any `json:"released"`
	}
	json.Unmarshal(js, &back)
	if len(back.Released) != 1 || back.Released[0]["how"] != "expired" || back.Released[0]["source"] != "poll" ||
		back.Released[0]["state"] != "TIME_WAIT" || back.Released[0]["precision_ms"] != float64(rel.PrecisionMS) {
		t.Errorf("incident JSON's released %v: want the expiry, by poll, with its precision", back.Released)
	}
	t.Logf("TIME_WAIT expired %s after it began (poll precision %d ms); recovered %d ms later",
		rel.Time.Sub(before).Round(time.Millisecond), rel.PrecisionMS, rec.Time.Sub(rel.Time).Milliseconds())
}
