package main

import (
	"encoding/json"
	"fmt"
	stdhtml "html"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/sink"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// typed decodes an --output file's records the way report does.
func typed(t *testing.T, path string) []events.Record {
	t.Helper()
	var out []events.Record
	for _, m := range records(t, path) {
		b, _ := json.Marshal(m)
		if rec, _ := incident.Decode(b); rec != nil {
			out = append(out, rec)
		}
	}
	return out
}

// ofType keeps the records of type T on port.
func ofType[T any](recs []events.Record, port int) []*T {
	var out []*T
	for _, r := range recs {
		if v, ok := any(r).(*T); ok && recordPort(r) == port {
			out = append(out, v)
		}
	}
	return out
}

func recordPort(r any) int {
	switch v := r.(type) {
	case *events.Failure:
		return int(v.Port)
	case *events.Repeats:
		return int(v.Port)
	case *events.Signal:
		return int(v.Port)
	case *events.Released:
		return int(v.Port)
	case *events.Recovered:
		return int(v.Port)
	case *events.PortFree:
		return int(v.Port)
	case *events.Abandoned:
		return int(v.Port)
	case *events.SignalRepeats:
		return int(v.Port)
	}
	return -1
}

// waitRecords waits until the --output file's records satisfy done, and
// returns them. The bound, recordsTimeout, is only for a tracer that
// never writes them: a loaded machine may take many seconds.
func waitRecords(t *testing.T, path, what string, done func([]events.Record) bool) []events.Record {
	t.Helper()
	deadline := time.Now().Add(recordsTimeout)
	for {
		recs := typed(t, path)
		if done(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("no %s within %v; output:\n%s", what, recordsTimeout, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordsTimeout bounds the waits for a tracer's records.
const recordsTimeout = 2 * time.Minute

// checkECS checks the ECS form of records against ECS 9.4.0.
func checkECS(t *testing.T, what string, recs []events.Record) {
	t.Helper()
	s := loadECSSchema(t)
	var out strings.Builder
	for _, r := range recs {
		b, err := sink.ECS(r)
		if err != nil {
			t.Fatalf("%s: ECS form of %T: %v", what, r, err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	ecsDocs(t, s, what, out.String())
}

// checkReportForms checks report's JSON (against docs/schema.json) and
// ECS forms (against ECS) of a log's incidents.
func checkReportForms(t *testing.T, log string) {
	t.Helper()
	res := bindwatch(t, "report", "--format", "json", log)
	var lines [][]byte
	for l := range strings.Lines(res.stdout) {
		lines = append(lines, []byte(strings.TrimSuffix(l, "\n")))
	}
	if seen := schemaLines(t, lines); seen["incident"] == 0 {
		t.Errorf("report --format json: no incident: %s", res)
	}
	ecs := bindwatch(t, "report", "--format", "ecs", log)
	if docs := ecsDocs(t, loadECSSchema(t), "report", ecs.stdout); len(docs["incident"]) == 0 {
		t.Errorf("report --format ecs: no incident document: %s", ecs)
	}
}

// reportJSON runs bindwatch report --format json on a log and returns its
// incidents.
func reportJSON(t *testing.T, args ...string) []events.Incident {
	t.Helper()
	res := bindwatch(t, append([]string{"report", "--format", "json"}, args...)...)
	if res.code != 0 {
		t.Fatalf("report: %s", res)
	}
	var out []events.Incident
	for _, l := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		if !strings.Contains(l, `"type":"incident"`) {
			continue
		}
		var in events.Incident
		if err := json.Unmarshal([]byte(l), &in); err != nil {
			t.Fatalf("report line is not an incident: %v: %s", err, l)
		}
		out = append(out, in)
	}
	return out
}

// bindwatch's own checks — free --kill waiting for the port, wait-free
// before a deploy starts the successor — bind and listen on the port
// for an instant: the port was free, and they say so, but they are not
// the recovery, nor a holder. The recovery is the successor's, even when
// wait-free's check and the successor's listen() are a few microseconds
// apart (wait-free && exec successor).
func TestIncidentProbesAreNotTheRecovery(t *testing.T) {
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	tr := startTracing(t, "--port", p, "--fold", "0", "--format", "json", "--output", out)
	old := startHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))
	// This test process fails, and stays: nobody gives up.
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	waitRecords(t, out, "failure", func(recs []events.Record) bool { return len(ofType[events.Failure](recs, port)) > 0 })

	if res := bindwatch(t, "free", p+"/tcp", "--kill", "--format", "json"); res.code != 0 {
		t.Fatalf("free --kill: %s", res)
	}
	old.wait(t, 5*time.Second)
	// The deploy: check the port, then exec the new server at once.
	succ := testenv.Helper(fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))
	succ.Args = []string{"sh", "-c", fmt.Sprintf(`"%s" wait-free %d/tcp --timeout 10s >/dev/null && exec "%s" -test.run='^$'`, bindwatchBin, port, os.Args[0])}
	succ.Path = "/bin/sh"
	successor := startHolder(t, succ)
	waitRecords(t, out, "recovered", func(recs []events.Record) bool { return len(ofType[events.Recovered](recs, port)) > 0 })
	time.Sleep(300 * time.Millisecond) // anything the tracer would write after the recovery
	tr.stop(t)
	recs := typed(t, out)
	if seen := schemaLines(t, readLines(out)); seen["port_free"] == 0 {
		t.Errorf("record types %v: no port_free", seen)
	}
	checkECS(t, "trace", recs)

	frees := ofType[events.PortFree](recs, port)
	if len(frees) < 2 {
		t.Errorf("port_free records %+v: want free's and wait-free's checks (2 or more)", frees)
	}
	checkers := map[int]bool{}
	for _, f := range frees {
		checkers[f.Process.PID] = true
		if f.Process.Comm != "bindwatch" || f.Syscall != "listen" {
			t.Errorf("port_free %+v: want a listen() by bindwatch", f)
		}
	}
	recovered := ofType[events.Recovered](recs, port)
	if len(recovered) != 1 || recovered[0].Process.PID != successor.pid() || recovered[0].SameProcess {
		t.Fatalf("recovered %+v: want one, the successor's (pid %d), a new process", recovered, successor.pid())
	}
	for _, r := range ofType[events.Released](recs, port) {
		if r.Holder == nil || r.Holder.PID != old.pid() {
			t.Errorf("released %+v: want only the old server's (pid %d), never a check's socket", r, old.pid())
		}
	}

	// The report tells the same: a note where the port was seen free,
	// the successor's recovery, no lane for a check.
	ins := reportJSON(t, out)
	checkReportForms(t, out)
	if len(ins) != 1 || ins[0].Recovered == nil || ins[0].Recovered.Process.PID != successor.pid() {
		t.Fatalf("report: incidents %+v: want one, recovered by the successor (pid %d)", ins, successor.pid())
	}
	notes := 0
	for _, e := range ins[0].Timeline {
		if e.Kind == events.MarkPortFree {
			notes++
		}
	}
	if notes != len(frees) {
		t.Errorf("report timeline has %d port_free notes, want %d", notes, len(frees))
	}
	text := bindwatch(t, "report", "--format", "text", out)
	if !strings.Contains(text.stdout, "port free: listen by pid") {
		t.Errorf("text report lacks the port-free note:\n%s", text.stdout)
	}
	page := filepath.Join(t.TempDir(), "r.html")
	if res := bindwatch(t, "report", "--html", page, "--format", "json", out); res.code != 0 {
		t.Fatalf("report --html: %s", res)
	}
	html, _ := os.ReadFile(page)
	for pid := range checkers {
		if strings.Contains(string(html), fmt.Sprintf("new: %d ", pid)) || strings.Contains(string(html), fmt.Sprintf("holder: %d ", pid)) {
			t.Errorf("the page has a lane for bindwatch's check (pid %d)", pid)
		}
	}
	if !strings.Contains(string(html), fmt.Sprintf("new: %d ", successor.pid())) {
		t.Errorf("the page has no lane for the successor (pid %d)", successor.pid())
	}
}

// An incident ends when nobody tries any more. Two attempts further apart
// than the quiet gap (--incident-quiet, scaled down from 10 s) are two
// incidents, the first abandoned; a failing process that exits while the
// holder lives abandons its incident once the exit grace has passed, long
// before the quiet gap, and the port is no longer watched: a signal to
// its holder afterwards is no incident's.
//
// Both trace this test's network namespace only: FreePort's port is free
// here, not in the namespaces of other test programs running at the same
// time, whose failures on the same number would be incidents of their own
// (a second abandoned incident, a signal to their holder).
func TestIncidentAbandoned(t *testing.T) {
	t.Run("quiet", func(t *testing.T) {
		port := testenv.FreePort(t)
		out := filepath.Join(t.TempDir(), "bw.jsonl")
		tr := startTracing(t, "--port", strconv.Itoa(port), "--netns", ownNetns(), "--fold", "0", "--incident-quiet", "1s", "--format", "json", "--output", out)
		testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
		// This test process fails, and lives on: only the gap ends it.
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		recs := waitRecords(t, out, "abandoned", func(recs []events.Record) bool { return len(ofType[events.Abandoned](recs, port)) > 0 })
		first := ofType[events.Failure](recs, port)[0]
		a := ofType[events.Abandoned](recs, port)[0]
		if a.Reason != events.AbandonedQuiet || !a.Start.Equal(first.Time) || a.Attempts != 1 || a.QuietMS != 1000 {
			t.Errorf("abandoned %+v: want the first incident's (start %s), quiet for 1s, after 1 attempt", a, first.Time)
		}
		if gap := a.Time.Sub(first.Time); gap < time.Second || gap > 10*time.Second {
			t.Errorf("abandoned %s after the last attempt, want just over the 1s gap", gap)
		}
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		waitRecords(t, out, "second failure", func(recs []events.Record) bool { return len(ofType[events.Failure](recs, port)) == 2 })
		tr.stop(t)
		if seen := schemaLines(t, readLines(out)); seen["abandoned"] != 1 || seen["start"] != 1 {
			t.Errorf("record types %v: want one abandoned", seen)
		}
		checkECS(t, "trace", typed(t, out))
		checkReportForms(t, out)
		ins := reportJSON(t, out)
		if len(ins) != 2 || ins[0].State != events.IncidentAbandoned || ins[0].AbandonedReason != events.AbandonedQuiet || ins[0].Attempts != 1 ||
			ins[1].State != events.IncidentOpen || ins[1].Attempts != 1 {
			t.Fatalf("report: %+v: want two incidents of one attempt each, the first abandoned (quiet), the second open at the trace's end", ins)
		}
		text := bindwatch(t, "report", "--format", "text", out).stdout
		if !strings.Contains(text, "abandoned, not recovered: nobody tried any more") || !strings.Contains(text, "abandoned: nobody tried for 1s") {
			t.Errorf("text report does not say the first was abandoned:\n%s", text)
		}
	})
	t.Run("exited", func(t *testing.T) {
		port := testenv.FreePort(t)
		out := filepath.Join(t.TempDir(), "bw.jsonl")
		tr := startTracing(t, "--port", strconv.Itoa(port), "--netns", ownNetns(), "--fold", "0", "--incident-quiet", "60s", "--format", "json", "--output", out)
		holder := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))
		failing := testenv.Helper(fmt.Sprintf("bind tcp 127.0.0.1 %d", port))
		if err := failing.Run(); err == nil {
			t.Fatal("the failing process bound the port")
		}
		exited := time.Now()
		recs := waitRecords(t, out, "abandoned", func(recs []events.Record) bool { return len(ofType[events.Abandoned](recs, port)) > 0 })
		a := ofType[events.Abandoned](recs, port)[0]
		if a.Reason != events.AbandonedExited || a.Attempts != 1 {
			t.Errorf("abandoned %+v: want every failing process exited, after 1 attempt", a)
		}
		if d := a.Time.Sub(exited); d < time.Second || d > 15*time.Second {
			t.Errorf("abandoned %s after the failing process exited; want after the 2s grace, long before the 60s gap", d)
		}
		// The port is no longer watched: the holder's end is no one's story.
		holder.Cmd.Process.Signal(syscall.SIGTERM)
		holder.Cmd.Wait()
		time.Sleep(500 * time.Millisecond)
		tr.stop(t)
		recs = typed(t, out)
		if n := len(ofType[events.Signal](recs, port)) + len(ofType[events.Released](recs, port)); n != 0 {
			t.Errorf("%d signal or released records after the incident was abandoned", n)
		}
		schemaLines(t, readLines(out))
		ins := reportJSON(t, out)
		if len(ins) != 1 || ins[0].State != events.IncidentAbandoned || ins[0].AbandonedReason != events.AbandonedExited {
			t.Fatalf("report: %+v: want one incident, abandoned (its failing process exited)", ins)
		}
	})
}

// ownNetns names this test process's network namespace for --netns: a
// trace of it alone sees none of the failures other test programs, in
// network namespaces of their own, make on the same port number.
func ownNetns() string {
	return fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
}

// readyPID waits for a helper's "ready PID ..." line in a file.
func readyPID(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			if f := strings.Fields(string(b)); len(f) >= 2 && f[0] == "ready" {
				if pid, err := strconv.Atoi(f[1]); err == nil {
					return pid
				}
			}
		}
	}
	t.Fatalf("%s has no ready line", path)
	return 0
}

// A rolling restart as deploy scripts do it: v1 serves; v2 starts and
// retries bind() every 100 ms; the script SIGTERMs v1, which drains for
// 0.6 s before it exits. The three figures tell it apart: drain_ms is
// v1's drain, unserved_ms (the outage: nothing listened) is the gap
// between v1's exit and v2's next retry, far less than contention_ms
// (v2's first failure to its recovery). Text and HTML say "outage" for
// unserved_ms only; JSON keeps outage_ms as contention_ms.
func TestIncidentRollingRestartDurations(t *testing.T) {
	port := testenv.FreePort(t)
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	tr := startTracing(t, "--port", strconv.Itoa(port), "--fold", "1s", "--format", "json", "--output", out)
	dir := t.TempDir()
	script := filepath.Join(dir, "deploy.sh")
	os.WriteFile(script, []byte(fmt.Sprintf(`
helper() { BINDWATCH_TEST_HELPER="$1" exec "%[1]s" -test.run='^$'; }
helper "serve tcp 127.0.0.1 %[2]d 600" > v1.out &
v1=$!
until [ -s v1.out ]; do sleep 0.01; done
helper "retry tcp 127.0.0.1 %[2]d 100 2000" > v2.out &
v2=$!
until [ -s v2.out ]; do sleep 0.01; done
sleep 0.5
kill -TERM $v1
wait $v2
`, os.Args[0], port)), 0o755)
	deploy := exec.Command("sh", script)
	deploy.Dir = dir
	if b, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("deploy script: %v\n%s", err, b)
	}
	v1, v2 := readyPID(t, filepath.Join(dir, "v1.out")), readyPID(t, filepath.Join(dir, "v2.out"))
	waitRecords(t, out, "recovered", func(recs []events.Record) bool { return len(ofType[events.Recovered](recs, port)) > 0 })
	tr.stop(t)
	recs := typed(t, out)
	schemaLines(t, readLines(out))
	checkECS(t, "trace", recs)

	signals, released := ofType[events.Signal](recs, port), ofType[events.Released](recs, port)
	if len(signals) != 1 || signals[0].Target.PID != v1 || len(released) != 1 || released[0].Holder == nil || released[0].Holder.PID != v1 {
		t.Fatalf("signals %+v, released %+v: want the script's SIGTERM to v1 (pid %d) and v1's release", signals, released, v1)
	}
	rec := ofType[events.Recovered](recs, port)[0]
	if rec.Process.PID != v2 || !rec.SameProcess {
		t.Errorf("recovered %+v: want v2 (pid %d), retrying", rec, v2)
	}
	if rec.DrainMS == nil || rec.UnservedMS == nil {
		t.Fatalf("recovered %+v: want drain_ms and unserved_ms", rec)
	}
	drain, unserved := *rec.DrainMS, *rec.UnservedMS
	t.Logf("contention %d ms, unserved %d ms, drain %d ms", rec.ContentionMS, unserved, drain)
	if want := released[0].Time.Sub(signals[0].Time).Milliseconds(); drain != want {
		t.Errorf("drain_ms %d, but v1 was released %d ms after the SIGTERM", drain, want)
	}
	// v1 sleeps 600 ms after the SIGTERM; exiting takes a little more.
	if drain < 600 || drain > 2000 {
		t.Errorf("drain_ms %d, want v1's 600 ms drain", drain)
	}
	// v2 retries every 100 ms (and a busy machine runs it late).
	if unserved < 0 || unserved > 1000 || unserved >= rec.ContentionMS {
		t.Errorf("unserved_ms %d, want a retry's gap, below contention_ms %d", unserved, rec.ContentionMS)
	}
	if first := ofType[events.Failure](recs, port)[0]; rec.ContentionMS != rec.Time.Sub(first.Time).Milliseconds() || rec.OutageMS != rec.ContentionMS {
		t.Errorf("contention_ms %d, outage_ms %d: want both the first failure to the recovery (%s)", rec.ContentionMS, rec.OutageMS, rec.Time.Sub(first.Time))
	}
	if rec.ContentionMS < 1000 {
		t.Errorf("contention_ms %d: v2 tried for 0.5 s and v1's 0.6 s drain at least", rec.ContentionMS)
	}

	checkReportForms(t, out)
	ins := reportJSON(t, out)
	if len(ins) != 1 {
		t.Fatalf("report: %d incidents, want 1", len(ins))
	}
	in := ins[0]
	if in.ContentionMS != rec.ContentionMS || in.OutageMS != rec.ContentionMS || in.UnservedMS == nil || *in.UnservedMS != unserved ||
		in.DrainMS == nil || *in.DrainMS != drain {
		t.Errorf("report's incident: contention %d, outage_ms %d, unserved %v, drain %v; want %d, %d, %d, %d", in.ContentionMS, in.OutageMS, in.UnservedMS, in.DrainMS,
			rec.ContentionMS, rec.ContentionMS, unserved, drain)
	}
	text := bindwatch(t, "report", "--format", "text", out).stdout
	for _, want := range []string{
		"recovered: contention " + events.Millis(rec.ContentionMS) + ", outage " + events.Millis(unserved) + " (nothing listened), drain " + events.Millis(drain),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "outage "+events.Millis(rec.ContentionMS)) {
		t.Errorf("text report calls the contention an outage:\n%s", text)
	}
	page := filepath.Join(t.TempDir(), "r.html")
	if res := bindwatch(t, "report", "--html", page, "--format", "json", out); res.code != 0 {
		t.Fatalf("report --html: %s", res)
	}
	pageHTML, _ := os.ReadFile(page)
	// As the page writes them: an unserved gap under 1 ms is "<1ms".
	if !strings.Contains(string(pageHTML), ">outage "+stdhtml.EscapeString(events.Millis(unserved))+" (nothing listened)<") || strings.Contains(string(pageHTML), "outage "+stdhtml.EscapeString(events.Millis(rec.ContentionMS))) {
		t.Errorf("the page's kernel lane does not call the unserved gap (only) the outage")
	}
}

// A postmortem does not tell its reader to kill a holder that is gone:
// the failure's hint said "kill PID" while the holder held the port; the
// report of the recovered incident gives the rest of it as advice for
// next time, in text and in HTML.
func TestReportAdviceAfterRecovery(t *testing.T) {
	port := testenv.FreePort(t)
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	tr := startTracing(t, "--port", strconv.Itoa(port), "--fold", "0", "--format", "json", "--output", out)
	holder := startPython(t, holdTCP, strconv.Itoa(port))
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	recs := waitRecords(t, out, "failure", func(recs []events.Record) bool { return len(ofType[events.Failure](recs, port)) > 0 })
	kill := fmt.Sprintf("kill %d", holder.pid())
	if hint := ofType[events.Failure](recs, port)[0].Hint; !strings.Contains(hint, kill) {
		t.Fatalf("the failure's hint %q does not say %q: nothing for the report to leave out", hint, kill)
	}
	holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.wait(t, 5*time.Second)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	waitRecords(t, out, "recovered", func(recs []events.Record) bool { return len(ofType[events.Recovered](recs, port)) > 0 })
	tr.stop(t)

	text := bindwatch(t, "report", "--format", "text", out).stdout
	if strings.Contains(text, kill) || strings.Contains(text, "  fix: ") || !strings.Contains(text, "  next time: ") {
		t.Errorf("the report of the recovered incident still says %q, or has no advice for next time:\n%s", kill, text)
	}
	page := filepath.Join(t.TempDir(), "r.html")
	if res := bindwatch(t, "report", "--html", page, "--format", "json", out); res.code != 0 {
		t.Fatalf("report --html: %s", res)
	}
	html, _ := os.ReadFile(page)
	if strings.Contains(string(html), kill) || !strings.Contains(string(html), "<b>next time:</b>") {
		t.Errorf("the page still says %q, or has no advice for next time", kill)
	}
}

// The attack of issue 19: uid 65534 fails one bind on each of 1,200 ports
// it holds, closes the holders and waits (its incidents stay open: the
// quiet gap here is 10 minutes, far longer than the test even on a loaded
// machine: an incident of the attacker's that closed before its last
// failure would free room in the table and make the refusals one short). Per-user quotas keep the kernel's table of
// watched ports (1,024) and the incident table (4,096) from being filled
// by one user: root's outage afterwards — a holder, a failure, kill -TERM
// of the holder, a new listener — is told whole (signal, released,
// recovered). What the tables refused is said in-band (incident_untracked),
// counted in stop and in /metrics, and report says of those incidents
// that they were not tracked, never "none sent" or "not recovered".
//
// The attack and root's outage run in a network namespace of their own
// that the tracer is limited to (--netns, in the kernel): root's other
// tests running beside this one fail binds on the host by the thousand,
// and with a long quiet gap their open incidents would fill the
// tables' room for root (which has no quota, only the tables' size).
func TestIncidentQuotaAttack(t *testing.T) {
	const ports = 1200
	netns, _ := testenv.NewNetns(t)
	ns, err := os.Open("/run/netns/" + netns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tr := startTracing(t, "--fold", "0", "--incident-quiet", "10m", "--ring-size", strconv.Itoa(16<<20),
		"--netns", "/run/netns/"+netns, "--metrics-addr", metrics, "--format", "json", "--output", out)
	attacker := testenv.StartHelperAsUserIn(t, "holdfail 127.0.0.1 "+strconv.Itoa(ports), 65534, netns)
	if n, _ := strconv.Atoi(attacker.Line[2]); n != ports {
		t.Fatalf("the attacker failed %d binds, want %d", n, ports)
	}
	byAttacker := func(recs []events.Record) (failures int, untracked map[string]int) {
		untracked = map[string]int{}
		for _, r := range recs {
			switch v := r.(type) {
			case *events.Failure:
				if v.Process.PID == attacker.PID {
					failures++
				}
			case *events.IncidentUntracked:
				if v.UID == 65534 {
					untracked[v.Table+"/"+v.Reason]++
				}
			}
		}
		return failures, untracked
	}
	waitRecords(t, out, "the attacker's failures", func(recs []events.Record) bool {
		n, _ := byAttacker(recs)
		return n == ports
	})

	// Root's outage.
	// Root's port is none of the attacker's: its incidents there would be
	// one with root's (the attacker let its ports go, so a bind in the
	// namespace cannot tell).
	attacked := map[uint16]bool{}
	for _, r := range typed(t, out) {
		if f, ok := r.(*events.Failure); ok && f.Process.PID == attacker.PID {
			attacked[f.Port] = true
		}
	}
	port := testenv.FreePort(t)
	for i := 0; attacked[uint16(port)]; i++ {
		if i == 50 {
			t.Fatal("no free port the attacker did not fail on")
		}
		port = testenv.FreePort(t)
	}
	old := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port), testenv.InNetns(netns)...)
	testenv.InPrivateNetns(t, ns, func() {
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	})
	waitRecords(t, out, "root's failure", func(recs []events.Record) bool { return len(ofType[events.Failure](recs, port)) > 0 })
	old.Cmd.Process.Signal(syscall.SIGTERM)
	old.Cmd.Wait()
	testenv.InPrivateNetns(t, ns, func() {
		testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	})
	waitRecords(t, out, "root's recovery", func(recs []events.Record) bool { return len(ofType[events.Recovered](recs, port)) > 0 })
	_, page := httpGet(t, "http://"+metrics+"/metrics")
	tr.stop(t)

	recs := typed(t, out)
	if s, r := ofType[events.Signal](recs, port), ofType[events.Released](recs, port); len(s) != 1 || s[0].Signal != "SIGTERM" || len(r) != 1 {
		t.Errorf("root's incident: signals %+v, released %+v: want the SIGTERM and the release", s, r)
	}
	for _, u := range ofType[events.IncidentUntracked](recs, port) {
		t.Errorf("root's port was refused: %+v", u)
	}
	// At least: other tests of the run (other packages run beside this
	// one) may fail binds as uid 65534 too, and their refusals count.
	_, untracked := byAttacker(recs)
	if untracked["kernel/user_quota"] < 256-64 || untracked["incidents/user_quota"] < ports-256 {
		t.Errorf("the attacker's untracked incidents %v: want %d refused by the kernel table's quota (64 of its 256 incidents watched) and %d by the incident table's (256)",
			untracked, 256-64, ports-256)
	}
	stop := lastStop(t, out)
	if want := uint64(ports - 64); stop.IncidentsUntracked < want {
		t.Errorf("stop: incidents_untracked %d, want at least the attacker's %d", stop.IncidentsUntracked, want)
	}
	for series, least := range map[string]int{
		`bindwatch_incidents_untracked_total{reason="user_quota",table="incidents"} `: ports - 256,
		`bindwatch_incidents_untracked_total{reason="user_quota",table="kernel"} `:    256 - 64,
	} {
		i := strings.Index(page, series)
		n := 0
		if i >= 0 {
			n, _ = strconv.Atoi(strings.Fields(page[i+len(series):])[0])
		}
		if n < least {
			t.Errorf("/metrics: %s%d, want at least %d", series, n, least)
		}
	}
	schemaLines(t, readLines(out))

	// The report: root's incident whole; the refused ones "not tracked".
	ins := reportJSON(t, out)
	states := map[string]int{}
	var others []string
	for _, in := range ins {
		if int(in.Port) == port {
			if in.State != events.IncidentRecovered || len(in.Signals) != 1 {
				t.Errorf("report: root's incident %s with %d signals, want recovered with the SIGTERM", in.State, len(in.Signals))
			}
			continue
		}
		if len(in.Failing) > 0 && in.Failing[0].Process.PID == attacker.PID {
			states[in.State+"/"+in.Untracked]++
		} else {
			others = append(others, fmt.Sprintf("port %d %s/%s failing %+v", in.Port, in.State, in.Untracked, in.Failing))
		}
	}
	if states["untracked/kernel"] != 256-64 || states["untracked/incidents"] != ports-256 || states["open/"] != 64 {
		t.Errorf("report: the attacker's incidents by state/table %v: want %d untracked by the kernel table, %d by the incident table, 64 open; other incidents: %q", states, 256-64, ports-256, others)
	}
	text := bindwatch(t, "report", "--format", "text", out).stdout
	for _, block := range strings.Split(text, "\n\n") {
		if !strings.Contains(block, "not tracked:") {
			continue
		}
		if strings.Contains(block, "signals: none sent") || strings.Contains(block, "not recovered") {
			t.Errorf("an untracked incident is told as if tracked:\n%s", block)
			break
		}
	}
	if !strings.Contains(text, "not tracked: the incident table was full for this user (its quota)") {
		t.Errorf("the text report never says an incident was not tracked")
	}
}

// The flood of issue 19: uid 65534's holder ignores SIGHUP, and the user
// floods it with SIGHUP (3,400 a second, as measured there) during its
// port's incident, while root SIGTERMs the holder of another port. Root's
// SIGTERM and that holder's release and recovery are recorded; the flood
// is recorded a few signals a second and folded into signal_repeats
// counts, which add up with the ones recorded to what the kernel saw,
// and the stop record says how many were folded.
func TestIncidentSignalFlood(t *testing.T) {
	const rate, floodMS = 3400, 4000
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	// This namespace's ports only: another test program's signals on the
	// numbers elsewhere are not the flood's.
	tr := startTracing(t, "--port", strconv.Itoa(portA), "--port", strconv.Itoa(portB), "--netns", ownNetns(), "--fold", "0", "--incident-quiet", "60s",
		"--format", "json", "--output", out)
	victim := testenv.StartHelperAsUser(t, fmt.Sprintf("hupproof tcp 127.0.0.1 %d", portA), 65534)
	holderB := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", portB))
	testenv.FailBind(t, "tcp", "127.0.0.1", portA, testenv.Opts{}, syscall.EADDRINUSE)
	testenv.FailBind(t, "tcp", "127.0.0.1", portB, testenv.Opts{}, syscall.EADDRINUSE)
	waitRecords(t, out, "both failures", func(recs []events.Record) bool {
		return len(ofType[events.Failure](recs, portA)) > 0 && len(ofType[events.Failure](recs, portB)) > 0
	})

	flood := testenv.HelperAsUser(t, fmt.Sprintf("sigflood %d %d %d %d", victim.PID, syscall.SIGHUP, rate, floodMS), 65534)
	var floodOut strings.Builder
	flood.Stdout = &floodOut
	floodStart := time.Now()
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(floodMS / 2 * time.Millisecond)
	termAt := time.Now()
	holderB.Cmd.Process.Signal(syscall.SIGTERM)
	holderB.Cmd.Wait()
	testenv.Hold(t, "tcp", "127.0.0.1", portB, testenv.Opts{})
	if err := flood.Wait(); err != nil {
		t.Fatalf("the flood: %v", err)
	}
	var sent int
	fmt.Sscanf(floodOut.String(), "sent %d", &sent)
	waitRecords(t, out, "root's recovery", func(recs []events.Record) bool { return len(ofType[events.Recovered](recs, portB)) > 0 })
	// No wait for the last second's folds: the stop reads what the
	// kernel queued and flushes every fold before its stop record.
	tr.stop(t)
	// The tracer's windows run on its own clock: a loaded machine reads
	// the flood later and longer than it lasted.
	windows := int(time.Since(floodStart)/time.Second) + 2
	recs := typed(t, out)

	sigB := ofType[events.Signal](recs, portB)
	if len(sigB) != 1 || sigB[0].Signal != "SIGTERM" || sigB[0].Sender.PID != os.Getpid() || sigB[0].Target.PID != holderB.PID {
		t.Errorf("port %d: signals %+v: want root's SIGTERM to its holder (pid %d)", portB, sigB, holderB.PID)
	} else if d := sigB[0].Time.Sub(termAt); d < -time.Second || d > time.Second {
		t.Errorf("root's SIGTERM recorded at %s, sent at %s", sigB[0].Time, termAt)
	}
	if r := ofType[events.Released](recs, portB); len(r) != 1 || r[0].Holder == nil || r[0].Holder.PID != holderB.PID {
		t.Errorf("port %d: released %+v: want its holder's", portB, r)
	}
	one := 0
	for _, s := range ofType[events.Signal](recs, portA) {
		if s.Signal == "SIGHUP" && s.Target.PID == victim.PID {
			one++
		}
	}
	var folded uint64
	repeats := ofType[events.SignalRepeats](recs, portA)
	for _, r := range repeats {
		if r.Signal != "SIGHUP" || r.Result != "ignored" || r.Sender.UID != 65534 || r.Target.PID != victim.PID || r.First.After(r.Last) {
			t.Errorf("signal_repeats %+v: want the flooder's SIGHUPs to the victim", r)
		}
		folded += r.Count
	}
	t.Logf("the flood: %d sent, %d recorded one by one, %d folded in %d signal_repeats records", sent, one, folded, len(repeats))
	if one > windows*events.SignalBurst || len(repeats) > windows {
		t.Errorf("%d SIGHUP records and %d signal_repeats in %d one-second windows: want at most %d a second and one fold a second", one, len(repeats), windows, events.SignalBurst)
	}
	// What the kernel's incident ring or the tracer's queue could not
	// hold is counted in stop's incident_records_lost: every signal is
	// accounted for, none twice. The lost count may also hold a few of
	// the port's other records (released, recovered), never more.
	stop := lastStop(t, out)
	if got := uint64(one) + folded; got > uint64(sent) || got+stop.IncidentRecordsLost < uint64(sent) || got+stop.IncidentRecordsLost > uint64(sent)+4 {
		t.Errorf("recorded %d + folded %d + lost %d of %d sent", one, folded, stop.IncidentRecordsLost, sent)
	}
	if stop.SignalsFolded != folded {
		t.Errorf("stop: signals_folded %d, want %d", stop.SignalsFolded, folded)
	}
	schemaLines(t, readLines(out))
	checkECS(t, "trace", recs)
	checkReportForms(t, out)
	// The report lists the flood's first signal (one kind: SIGHUP,
	// ignored, to the victim, from uid 65534's helper) and counts the
	// rest, those recorded one by one and those the tracer folded.
	for _, in := range reportJSON(t, out) {
		if int(in.Port) != portA {
			continue
		}
		if len(in.Signals) != 1 || in.SignalsFolded != uint64(one-1)+folded {
			t.Errorf("report: port %d's incident lists %d signals and folds %d; want 1 and %d", portA, len(in.Signals), in.SignalsFolded, uint64(one-1)+folded)
		}
	}
}
