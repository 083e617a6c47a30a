package watch

import (
	"encoding/json"
	"fmt"
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
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// story is a session's incident records, decoded.
type story struct {
	failures  []*events.Failure
	repeats   []*events.Repeats
	signals   []*events.Signal
	released  []*events.Released
	recovered []*events.Recovered
	all       []events.Record
}

func (s *session) story(port int) story {
	s.t.Helper()
	var st story
	for _, r := range s.out.records(s.t) {
		b, _ := json.Marshal(r)
		rec, _ := incident.Decode(b)
		if rec == nil {
			continue
		}
		st.all = append(st.all, rec)
		switch v := rec.(type) {
		case *events.Failure:
			if int(v.Port) == port {
				st.failures = append(st.failures, v)
			}
		case *events.Repeats:
			if int(v.Port) == port {
				st.repeats = append(st.repeats, v)
			}
		case *events.Signal:
			if int(v.Port) == port {
				st.signals = append(st.signals, v)
			}
		case *events.Released:
			// Every release of the port: the recovering process's own
			// (a retry helper holds the port 2 s), queued in the
			// kernel before the recovery unwatches the port when a slow
			// machine reads late, must not be written (the incident has
			// ended), so the tests' "exactly one" holds.
			if int(v.Port) == port {
				st.released = append(st.released, v)
			}
		case *events.Recovered:
			if int(v.Port) == port {
				st.recovered = append(st.recovered, v)
			}
		}
	}
	return st
}

// waitRecovered waits until the port's recovered record is written.
func (s *session) waitRecovered(port int, within time.Duration) story {
	s.t.Helper()
	return s.waitStory(port, within, "recovered", func(st story) bool { return len(st.recovered) > 0 })
}

// waitReleased waits until a released record on the port is written.
func (s *session) waitReleased(port int, within time.Duration) story {
	s.t.Helper()
	return s.waitStory(port, within, "released", func(st story) bool { return len(st.released) > 0 })
}

// waitStory waits until the port's story has what done looks for (a
// record of type what).
func (s *session) waitStory(port int, within time.Duration, what string, done func(story) bool) story {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if st := s.story(port); done(st) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("no %s record on port %d within %s; output:\n%s", what, port, within, s.out.String())
	return story{}
}

// readReadyPID waits for a helper's "ready PID ..." line in a file.
func readReadyPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(testenv.StartTimeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			if f := strings.Fields(string(b)); len(f) >= 2 && f[0] == "ready" {
				if pid, err := strconv.Atoi(f[1]); err == nil {
					return pid
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s has no ready line", path)
	return 0
}

// waitExited waits until pid has exited (a zombie, or gone).
func waitExited(t *testing.T, pid int) {
	t.Helper()
	// A bound for a process that never exits, not for how fast a loaded
	// machine runs a killed one's exit.
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if testenv.Exited(pid) {
			return
		}
	}
	t.Fatalf("pid %d did not exit", pid)
}

// recordsJSON is records as JSON, for a failure's message: what each
// record says, not its address.
func recordsJSON[R any](records []R) string {
	b, err := json.Marshal(records)
	if err != nil {
		return fmt.Sprintf("%+v", records)
	}
	return string(b)
}

func within(t *testing.T, what string, got, lo, hi int64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %d, want %d..%d", what, got, lo, hi)
	}
}

// A rolling restart: v1 listens; the deploy script starts v2, which
// retries bind() every 100 ms; after a second the script SIGTERMs v1, which
// exits 300 ms later. The records tell it: v2's failures folded into
// repeats, the script's SIGTERM, v1's exit releasing the port after
// holding it, and v2's recovery after ~13 attempts and ~1.3 s.
func TestIncidentRollingRestart(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.Fold = time.Second
	s := startSession(t, cfg)
	dir := t.TempDir()
	script := filepath.Join(dir, "deploy.sh")
	// The servers are helper processes (the test binary, re-executed).
	os.WriteFile(script, []byte(fmt.Sprintf(`
helper() { BINDWATCH_TEST_HELPER="$1" exec "%[1]s" -test.run='^$'; }
helper "serve tcp 127.0.0.1 %[2]d 300" > v1.out &
v1=$!
until [ -s v1.out ]; do sleep 0.01; done
helper "retry tcp 127.0.0.1 %[2]d 100 2000" > v2.out &
v2=$!
until [ -s v2.out ]; do sleep 0.01; done
sleep 1
kill -TERM $v1
wait $v2
`, os.Args[0], port)), 0o755)
	deploy := exec.Command("sh", script)
	deploy.Dir = dir
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("deploy script: %v\n%s", err, out)
	}
	v1 := readReadyPID(t, filepath.Join(dir, "v1.out"))
	v2 := readReadyPID(t, filepath.Join(dir, "v2.out"))
	st := s.waitRecovered(port, 5*time.Second)

	if len(st.failures) == 0 || st.failures[0].Process.PID != v2 {
		t.Fatalf("failures %v: want v2's (pid %d)", st.failures, v2)
	}
	if len(st.repeats) == 0 {
		t.Errorf("v2's retries were not folded into repeats records (fold 1s)")
	}
	if len(st.signals) != 1 {
		t.Fatalf("signals %s: want the script's one SIGTERM", recordsJSON(st.signals))
	}
	sig := st.signals[0]
	if sig.Signal != "SIGTERM" || sig.Sender.PID != deploy.Process.Pid || sig.Target.PID != v1 || sig.Result != "delivered" {
		t.Errorf("signal %+v: want SIGTERM from the script (pid %d) to v1 (pid %d), delivered", sig, deploy.Process.Pid, v1)
	}
	if !strings.Contains(strings.Join(sig.Sender.Cmdline, " "), "deploy.sh") {
		t.Errorf("signal sender's cmdline %q does not name the script", sig.Sender.Cmdline)
	}
	if len(st.released) != 1 {
		t.Fatalf("released %s: want one", recordsJSON(st.released))
	}
	rel := st.released[0]
	if rel.Source != events.SourceKernel || rel.How != events.HowExit || rel.ExitCode == nil || *rel.ExitCode != 0 ||
		rel.Holder == nil || rel.Holder.PID != v1 || rel.Closer == nil || rel.Closer.PID != v1 {
		t.Errorf("released %+v: want v1 (pid %d) exiting with status 0, seen by the kernel", rel, v1)
	}
	within(t, "released.held_ms", rel.HeldMS, 1300, 10000) // 1.3 s and v2's start-up
	rec := st.recovered[0]
	if rec.Process.PID != v2 || !rec.SameProcess || rec.Syscall != "listen" || rec.Source != events.SourceKernel {
		t.Errorf("recovered %+v: want v2 (pid %d), the same process, by listen()", rec, v2)
	}
	t.Logf("recovered after %d attempts, outage %d ms; v1 held the port %d ms", rec.Attempts, rec.OutageMS, rel.HeldMS)
	// v1 exits 300 ms after the SIGTERM, and v2's next retry recovers:
	// the release falls between the two (how late after the grace depends
	// on the machine: 2.1 s in a stalled emulated guest).
	within(t, "release after SIGTERM (ms)", rel.Time.Sub(sig.Time).Milliseconds(), 280, rec.Time.Sub(sig.Time).Milliseconds())
	// Every failure of v2 is an attempt: those reported and those folded.
	failed := uint64(len(st.failures))
	for _, r := range st.repeats {
		failed += r.Count
	}
	if rec.Attempts != failed {
		t.Errorf("recovered.attempts = %d, but %d failures were reported and folded", rec.Attempts, failed)
	}
	// v2 starts trying 1.3 s (the script's sleep and v1's grace) before
	// the release, and no sooner than v1 held the port; it retries every
	// 100 ms plus its own run time: ~13 attempts on this host, fewer on a
	// slow emulated one, never more than one per 100 ms.
	within(t, "recovered.outage_ms", rec.OutageMS, 1250, rel.HeldMS+rec.Time.Sub(rel.Time).Milliseconds()+1)
	within(t, "recovered.attempts", int64(rec.Attempts), 3, rec.OutageMS/100+1)
	// One 100 ms retry, however slow the machine, is far less than a second.
	within(t, "recovery after the release (ms)", rec.Time.Sub(rel.Time).Milliseconds(), 0, 1000)
	if first := st.failures[0].Time; rec.OutageMS != rec.Time.Sub(first).Milliseconds() {
		t.Errorf("outage_ms %d, but the first failure was %s before the recovery", rec.OutageMS, rec.Time.Sub(first))
	}

	// The incident built from these records says the same.
	ins := incident.Build(st.all)
	var in *events.Incident
	for _, i := range ins {
		if int(i.Port) == port {
			in = i
		}
	}
	if in == nil || in.State != events.IncidentRecovered || in.Attempts != rec.Attempts || in.OutageMS != rec.OutageMS {
		t.Fatalf("incident %+v: want recovered with %d attempts, %d ms", in, rec.Attempts, rec.OutageMS)
	}
	kinds := map[string]int{}
	for _, e := range in.Timeline {
		kinds[e.Kind]++
	}
	if kinds[events.MarkFailure] == 0 || kinds[events.MarkRepeats] == 0 || kinds[events.MarkSignal] != 1 || kinds[events.MarkReleased] != 1 || kinds[events.MarkRecovered] != 1 {
		t.Errorf("timeline kinds %v", kinds)
	}
}

// A leftover child: v1 forks a child that inherits its listen socket, then
// is killed (SIGKILL): an instance that is gone, as the kernel saw it. v2 fails against the child; nothing signals the child
// until the test kills it a second later; then v2 recovers. The child is
// the holder, a leftover; the only signal recorded is the kill.
func TestIncidentLeftoverChild(t *testing.T) {
	port := testenv.FreePort(t)
	// This namespace's only: another test program's signals and
	// failures on the number elsewhere are not this incident's.
	cfg := onlyPort(port)
	cfg.Netns = testenv.Netns(t)
	s := startSession(t, cfg)
	// v1 listens, starts a child that inherits the socket, and is killed.
	v1 := testenv.StartHelper(t, fmt.Sprintf("inherit 127.0.0.1 %d killed", port))
	child := v1.PID
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	waitExited(t, v1.Cmd.Process.Pid) // not Wait: that would close the child's stdin
	v2 := testenv.StartHelper(t, fmt.Sprintf("retry tcp 127.0.0.1 %d 100 2000", port))
	s.waitFailure(port)
	time.Sleep(time.Second)
	killedAt := time.Now()
	syscall.Kill(child, syscall.SIGKILL)
	waitExited(t, child)
	goneAt := time.Now() // the release, at its exit, came before
	st := s.waitRecovered(port, time.Minute)

	h := heldBy(*st.failures[0], child)
	if h == nil {
		t.Fatalf("failure holders %+v: want the child (pid %d)", st.failures[0].Holders, child)
	}
	if kind := incident.HolderKind(h, &st.failures[0].Process); kind != "leftover child" {
		t.Errorf("holder kind %q, want leftover child (holder %+v)", kind, h)
	}
	if len(st.signals) != 1 || st.signals[0].Signal != "SIGKILL" || st.signals[0].Target.PID != child || st.signals[0].Sender.PID != os.Getpid() {
		t.Errorf("signals %s: want only the test's SIGKILL to the child", recordsJSON(st.signals))
	}
	if len(st.released) != 1 || st.released[0].How != events.HowExit || st.released[0].KilledBy != "SIGKILL" ||
		st.released[0].Closer == nil || st.released[0].Closer.PID != child ||
		st.released[0].Holder == nil || st.released[0].Holder.PID != v1.Cmd.Process.Pid {
		t.Fatalf("released %s: want the child killed by SIGKILL, v1 (pid %d) as who listened", recordsJSON(st.released), v1.Cmd.Process.Pid)
	}
	// The release's time is the kernel's, at the child's exit: after the
	// kill and before the test saw it gone, however late a loaded
	// machine ran it (50 ms either side for the clocks' conversion).
	within(t, "release after the kill (ms)", st.released[0].Time.Sub(killedAt).Milliseconds(), -50, goneAt.Sub(killedAt).Milliseconds()+50)
	if rec := st.recovered[0]; rec.Process.PID != v2.PID || !rec.SameProcess {
		t.Errorf("recovered %+v: want v2 (pid %d) retrying", rec, v2.PID)
	}
	var b strings.Builder
	incident.WriteText(&b, incident.Build(st.all))
	for _, want := range []string{"leftover child", "SIGKILL to pid " + strconv.Itoa(child), "killed by SIGKILL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// Recovery by a different process — a supervisor's fresh instance after
// the failed one gave up — is told apart from a retry loop's.
func TestIncidentRecoveredByNewProcess(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	v1 := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))
	// The first instance fails once and gives up.
	if err := testenv.Helper(fmt.Sprintf("bind tcp 127.0.0.1 %d", port)).Run(); err == nil {
		t.Fatal("the failing instance bound the port")
	}
	s.waitFailure(port)
	v1.Cmd.Process.Signal(syscall.SIGTERM)
	v1.Cmd.Wait()
	// The supervisor starts a fresh one.
	fresh := testenv.StartHelper(t, fmt.Sprintf("retry tcp 127.0.0.1 %d 100 2000", port))
	st := s.waitRecovered(port, 5*time.Second)
	if rec := st.recovered[0]; rec.Process.PID != fresh.PID || rec.SameProcess || rec.Attempts != 1 {
		t.Errorf("recovered %+v: want the fresh instance (pid %d), not the same process, after 1 attempt", rec, fresh.PID)
	}
}

// A UDP holder's release: the fentry and kprobe backends see it in the
// kernel (udp_lib_unhash), in the dying holder's context; the tracepoint
// backend has no hook for it, and the poll sees it go and says so (source
// poll, with its precision). The new bind() is the kernel's recovery.
func TestIncidentUDPHolder(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	holder := testenv.StartHelper(t, fmt.Sprintf("hold udp 127.0.0.1 %d", port))
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	s.waitFailure(port)
	time.Sleep(300 * time.Millisecond)
	holder.Cmd.Process.Kill()
	holder.Cmd.Wait()
	s.waitReleased(port, 3*time.Second)
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	st := s.waitRecovered(port, 5*time.Second)
	if len(st.released) != 1 {
		t.Fatalf("released %s: want one", recordsJSON(st.released))
	}
	rel := st.released[0]
	if rel.How != events.HowExit || rel.Holder == nil || rel.Holder.PID != holder.PID || rel.State != "UNCONN" {
		t.Errorf("released %+v: want the holder (pid %d) gone by exit", rel, holder.PID)
	}
	t.Logf("%s backend: the UDP holder's release seen by %s", s.s.Tracer().Backend(), rel.Source)
	if s.s.Tracer().SeesUDPReleases() {
		if rel.Source != events.SourceKernel || rel.KilledBy != "SIGKILL" || rel.Closer == nil || rel.Closer.PID != holder.PID {
			t.Errorf("released %+v: want the kernel's, the holder killed by SIGKILL", rel)
		}
	} else if rel.Source != events.SourcePoll || rel.PrecisionMS <= 0 || rel.PrecisionMS > 1000 {
		t.Errorf("released %+v: want the poll's, with its precision", rel)
	}
	if rec := st.recovered[0]; rec.Syscall != "bind" || rec.Proto != "udp" || rec.Process.PID != os.Getpid() || rec.Source != events.SourceKernel {
		t.Errorf("recovered %+v: want this process's UDP bind()", rec)
	}
}

// A TIME_WAIT holder: a socket that can reuse it (SO_REUSEADDR on both)
// recovers the port long before the 60 s expire; the report says so.
func TestIncidentTimeWaitRecoveredSooner(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	testenv.LeaveTimeWait(t, "127.0.0.1", port, true)
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	s.waitFailure(port)
	time.Sleep(200 * time.Millisecond)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{ReuseAddr: true})
	st := s.waitRecovered(port, 5*time.Second)
	if len(st.released) != 0 {
		t.Errorf("released %s: the TIME_WAIT socket cannot have expired yet", recordsJSON(st.released))
	}
	var b strings.Builder
	incident.WriteText(&b, incident.Build(st.all))
	for _, want := range []string{"TIME_WAIT", "recovered before the TIME_WAIT expired"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// Filters keep their meaning: a failure the filters drop opens no
// incident, so its port gets no signal, released or recovered records.
func TestIncidentFollowsFilters(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.PIDs = []uint32{1} // init: never this test's failures
	s := startSession(t, cfg)
	holder := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	time.Sleep(300 * time.Millisecond)
	holder.Cmd.Process.Signal(syscall.SIGTERM)
	holder.Cmd.Wait()
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	time.Sleep(300 * time.Millisecond)
	if st := s.story(port); len(st.failures)+len(st.signals)+len(st.released)+len(st.recovered) != 0 {
		t.Errorf("filtered out, yet: %d failures, %d signals, %d released, %d recovered", len(st.failures), len(st.signals), len(st.released), len(st.recovered))
	}
}

// Several UDP holders in one namespace, each with an incident, all let go
// at once: one poll (one sock_diag dump per address family for all the
// ports, on the tracepoint backend; the kernel's hook elsewhere) sees
// each go, names each holder, and each port recovers on its own.
func TestIncidentUDPHoldersPolledTogether(t *testing.T) {
	const n = 5
	var cfg tracer.Config
	ports := make([]int, n)
	holders := make([]*testenv.HelperProc, n)
	for i := range ports {
		ports[i] = testenv.FreePort(t)
		cfg.Ports = append(cfg.Ports, tracer.PortRange{Lo: uint16(ports[i]), Hi: uint16(ports[i])})
	}
	s := startSession(t, cfg)
	for i, port := range ports {
		holders[i] = testenv.StartHelper(t, fmt.Sprintf("hold udp 127.0.0.1 %d", port))
		testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		s.waitFailure(port)
	}
	time.Sleep(300 * time.Millisecond)
	for _, h := range holders {
		h.Cmd.Process.Kill()
	}
	for _, h := range holders {
		h.Cmd.Wait()
	}
	for i, port := range ports {
		st := s.waitReleased(port, 5*time.Second)
		rel := st.released[0]
		if len(st.released) != 1 || rel.Holder == nil || rel.Holder.PID != holders[i].PID || rel.How != events.HowExit {
			t.Errorf("port %d: released %+v: want its holder (pid %d) gone by exit", port, st.released, holders[i].PID)
		}
		if !s.s.Tracer().SeesUDPReleases() && (rel.Source != events.SourcePoll || rel.PrecisionMS <= 0 || rel.PrecisionMS > 1000) {
			t.Errorf("port %d: released %+v: want the poll's, with its precision", port, rel)
		}
		testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
		if rec := s.waitRecovered(port, 5*time.Second).recovered[0]; rec.Process.PID != os.Getpid() {
			t.Errorf("port %d: recovered %+v: want this process's bind()", port, rec)
		}
	}
}
