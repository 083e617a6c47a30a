package corpus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// record is one JSON line of bindwatch, decoded as it is: the tests read
// fields by name, so that a field the judgement adds (confidence, the
// incident's durations) is checked without a struct to carry it.
type record map[string]any

// get follows path through nested objects; nil when a step is missing.
func (r record) get(path ...string) any {
	var v any = map[string]any(r)
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (r record) str(path ...string) string {
	s, _ := r.get(path...).(string)
	return s
}

// num is a number field, and whether it is there.
func (r record) num(path ...string) (float64, bool) {
	f, ok := r.get(path...).(float64)
	return f, ok
}

func (r record) pid(path ...string) int {
	f, _ := r.num(path...)
	return int(f)
}

// list is a nested array's objects.
func (r record) list(path ...string) []record {
	a, _ := r.get(path...).([]any)
	var out []record
	for _, v := range a {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// holderPIDs are the pids of every process of every holder of a failure.
func (r record) holderPIDs() []int {
	var pids []int
	for _, h := range r.list("holders") {
		for _, p := range h.list("processes") {
			pids = append(pids, p.pid("pid"))
		}
	}
	return pids
}

// String is a failure as a person reads it in a test's log: who failed,
// the verdict and its words.
func (r record) String() string {
	if r.str("type") != "bind_failure" {
		b, _ := json.Marshal(r)
		return string(b)
	}
	return fmt.Sprintf("%s %s %s:%v by pid %d (%v) <- holders %v: cause=%q confidence=%q\n\tdiagnosis: %s\n\thint: %s",
		r.str("errno"), r.str("syscall"), r.str("addr"), r.get("port"), r.pid("process", "pid"), r.get("process", "cmdline"),
		r.holderPIDs(), r.str("cause"), r.str("confidence"), r.str("diagnosis"), r.str("hint"))
}

// ofType picks the records of one type.
func ofType(recs []record, typ string) []record {
	var out []record
	for _, r := range recs {
		if r.str("type") == typ {
			out = append(out, r)
		}
	}
	return out
}

// failuresOf are the bind_failure records of the process pid.
func failuresOf(recs []record, pid int) []record {
	return slices.DeleteFunc(ofType(recs, "bind_failure"), func(r record) bool { return r.pid("process", "pid") != pid })
}

// parseLines decodes JSON lines; a line cut off at the end (still being
// written) is left out when partial is true, and fails the test otherwise.
// Every record must match docs/schema.json.
func parseLines(t *testing.T, what string, b []byte, partial bool) []record {
	t.Helper()
	var out []record
	for len(b) > 0 {
		line, rest, complete := bytes.Cut(b, []byte("\n"))
		b = rest
		if !complete && partial {
			break
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v: %s", what, err, line)
		}
		if !partial {
			if err := loadSchema(t).Validate(map[string]any(r)); err != nil {
				t.Errorf("%s: a %s record does not match docs/schema.json: %v\n%s", what, r.str("type"), err, line)
			}
		}
		out = append(out, r)
	}
	return out
}

var schema struct {
	once sync.Once
	s    *testenv.Schema
	err  error
}

func loadSchema(t *testing.T) *testenv.Schema {
	t.Helper()
	schema.once.Do(func() { schema.s, schema.err = testenv.LoadSchema("../../docs/schema.json") })
	if schema.err != nil {
		t.Fatalf("load docs/schema.json: %v", schema.err)
	}
	return schema.s
}

// trace is the real bindwatch tracing a scenario's ports into a file, as
// `bindwatch --format json --port P --output FILE` does on a host.
type trace struct {
	cmd    *exec.Cmd
	path   string
	stderr *testenv.SyncBuffer
	done   chan struct{}
	err    error
}

// startTrace starts bindwatch on ports and returns once it traces (its
// ready file is there, and its output begins with the start record).
func startTrace(t *testing.T, ports ...int) *trace {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	tr := &trace{path: filepath.Join(dir, "bindwatch.jsonl"), stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	ready := filepath.Join(dir, "ready")
	args := []string{"--format", "json", "--output", tr.path, "--ready-file", ready, "--backend", testenv.Backend()}
	for _, p := range ports {
		args = append(args, "--port", strconv.Itoa(p))
	}
	tr.cmd = exec.Command(bindwatchBin, args...)
	tr.cmd.Stderr = tr.stderr
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tr.err = tr.cmd.Wait(); close(tr.done) }()
	t.Cleanup(func() {
		select {
		case <-tr.done:
		default:
			tr.cmd.Process.Kill()
			<-tr.done
		}
	})
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-tr.done:
			t.Fatalf("bindwatch %q exited before it traced: %v\n%s", args, tr.err, tr.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bindwatch %q not tracing after 30s\n%s", args, tr.stderr)
		}
	}
	if recs := tr.records(t); len(recs) == 0 || recs[0].str("type") != "start" {
		t.Fatalf("bindwatch is ready but its output does not begin with a start record: %v", recs)
	}
	return tr
}

// records is what bindwatch has written so far.
func (tr *trace) records(t *testing.T) []record {
	t.Helper()
	b, err := os.ReadFile(tr.path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return parseLines(t, tr.path, b, true)
}

// waitFor waits up to timeout for a record that match accepts, and
// returns it; it fails the test, saying what, if none comes or bindwatch
// exits first.
func (tr *trace) waitFor(t *testing.T, timeout time.Duration, what string, match func(record) bool) record {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		for _, r := range tr.records(t) {
			if match(r) {
				return r
			}
		}
		select {
		case <-tr.done:
			t.Fatalf("bindwatch exited (%v) before it wrote %s\n%s", tr.err, what, tr.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bindwatch wrote no %s within %v; it wrote:\n%s", what, timeout, recordsText(tr.records(t)))
		}
	}
}

// failureBy waits for the first bind_failure of pid.
func (tr *trace) failureBy(t *testing.T, pid int) record {
	t.Helper()
	return tr.waitFor(t, 15*time.Second, fmt.Sprintf("bind_failure of pid %d", pid), func(r record) bool {
		return r.str("type") == "bind_failure" && r.pid("process", "pid") == pid
	})
}

// stop stops bindwatch as a service manager does (SIGTERM) and returns
// every record it wrote: it must exit 0, end with its stop record, and
// every record must match the schema.
func (tr *trace) stop(t *testing.T) []record {
	t.Helper()
	tr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tr.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("bindwatch still running 15s after SIGTERM\n%s", tr.stderr)
	}
	if tr.err != nil {
		t.Fatalf("bindwatch exited with %v after SIGTERM\n%s", tr.err, tr.stderr)
	}
	b, err := os.ReadFile(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	recs := parseLines(t, tr.path, b, false)
	if len(recs) == 0 || recs[len(recs)-1].str("type") != "stop" {
		t.Fatalf("bindwatch's output does not end with a stop record:\n%s", recordsText(recs))
	}
	t.Logf("bindwatch wrote:\n%s", recordsText(recs))
	return recs
}

// failed stops bindwatch and returns the bind_failure records of pid,
// failing the test when there is none.
func (tr *trace) failed(t *testing.T, pid int, who string) []record {
	t.Helper()
	fs := failuresOf(tr.stop(t), pid)
	if len(fs) == 0 {
		t.Fatalf("no bind_failure of %s (pid %d)", who, pid)
	}
	return fs
}

// awaitAbandoned waits for the abandoned record that ends the incident
// on port once its failing programs have all exited (the tracer writes it
// a short grace after their last attempt). Its absence is an error, not
// the end of the test: the checks of the failures still run.
func (tr *trace) awaitAbandoned(t *testing.T, port int) {
	t.Helper()
	for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, r := range tr.records(t) {
			if r.str("type") == "abandoned" && r.pid("port") == port {
				return
			}
		}
	}
	t.Errorf("no abandoned record for port %d within 3m: every failing process has exited, so nobody tries any more and its incident is over", port)
}

// gaveUp checks the report on an incident whose failing program gave up
// and exited while bindwatch traced (the running instance served on):
// nobody tries any more, so it ends abandoned — not open, not recovered;
// its cause is the failures'; and its hint kills none of live.
func (tr *trace) gaveUp(t *testing.T, port int, cause string, live ...int) {
	t.Helper()
	inc := incidentOn(t, tr.report(t), port)
	if inc.str("state") != "abandoned" {
		t.Errorf("the incident on port %d is %q, want abandoned: its failing program gave up and exited", port, inc.str("state"))
	}
	if inc.str("cause") != cause {
		t.Errorf("the incident's cause is %q, want %q", inc.str("cause"), cause)
	}
	for _, pid := range live {
		if killsPID(inc.str("hint"), pid) {
			t.Errorf("the incident's hint kills pid %d, which serves: %s", pid, inc.str("hint"))
		}
	}
}

// report runs `bindwatch report --format json` on the trace's file, once
// bindwatch has stopped, and returns its records.
func (tr *trace) report(t *testing.T) []record {
	t.Helper()
	cmd := exec.Command(bindwatchBin, "report", "--format", "json", tr.path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bindwatch report --format json %s: %v\n%s", tr.path, err, errb.String())
	}
	recs := parseLines(t, "bindwatch report", out.Bytes(), false)
	t.Logf("bindwatch report --format json wrote:\n%s", recordsText(recs))
	return recs
}

// reportText is `bindwatch report --format text` on the trace's file.
func (tr *trace) reportText(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(bindwatchBin, "report", "--format", "text", tr.path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bindwatch report --format text %s: %v\n%s", tr.path, err, errb.String())
	}
	return out.String()
}

func recordsText(recs []record) string {
	var b strings.Builder
	for _, r := range recs {
		if r.str("type") == "bind_failure" {
			b.WriteString("  " + r.String() + "\n")
			continue
		}
		j, _ := json.Marshal(r)
		fmt.Fprintf(&b, "  %s\n", j)
	}
	return b.String()
}

// scene is where a scenario's programs run: a directory of their own
// (configuration, pid and log files), and a cgroup of their own that is
// emptied — every process in it killed, daemonized ones too — when the
// scenario ends.
type scene struct {
	t   *testing.T
	dir string
	cg  *testenv.Cgroup

	mu    sync.Mutex
	procs []*proc
	n     int
}

// newScene makes a scene for t, skipping t when one of programs is not
// installed (and failing it under BINDWATCH_REQUIRE_BPF=1, as CI runs).
func newScene(t *testing.T, programs ...string) *scene {
	t.Helper()
	testenv.RequireRoot(t)
	for _, p := range programs {
		need(t, p)
	}
	// The directory is readable by the users daemons drop to (www-data,
	// memcache): t.TempDir is root's alone.
	dir, err := os.MkdirTemp("", "bindwatch-corpus-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &scene{t: t, dir: dir, cg: testenv.NewCgroup(t)}
	t.Cleanup(s.killAll)
	return s
}

// need skips t when program is not installed, or fails it where every
// test must run (BINDWATCH_REQUIRE_BPF=1).
func need(t *testing.T, program string) {
	t.Helper()
	testenv.Require(t, program, "a program of the corpus")
}

// command is a command run in the scene: in its directory and cgroup.
func (s *scene) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: s.cg.FD}
	return cmd
}

// proc is a program the scene started.
type proc struct {
	cmd  *exec.Cmd
	log  string // its standard output and error
	done chan struct{}
	err  error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// start starts cmd with its output in a log file of the scene.
func (s *scene) start(cmd *exec.Cmd) *proc {
	s.t.Helper()
	s.mu.Lock()
	s.n++
	logPath := filepath.Join(s.dir, fmt.Sprintf("%s-%d.out", filepath.Base(cmd.Path), s.n))
	s.mu.Unlock()
	out, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %q: %v", cmd.Args, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

// output is what the program has written so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// exited reports whether the program has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the program to exit and returns its exit status
// (-1: killed by a signal).
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%q still running after %v; it said:\n%s", p.cmd.Args, d, p.output())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%q: %v", p.cmd.Args, p.err)
	return 0
}

// run runs cmd to its end (a daemon's start command: until it has
// daemonized) and returns its exit status and output.
func (s *scene) run(cmd *exec.Cmd) (int, string) {
	s.t.Helper()
	p := s.start(cmd)
	code := p.wait(s.t, 30*time.Second)
	return code, p.output()
}

// runOK is run for a command that must succeed.
func (s *scene) runOK(cmd *exec.Cmd) string {
	s.t.Helper()
	code, out := s.run(cmd)
	if code != 0 {
		s.t.Fatalf("%q exited %d:\n%s", cmd.Args, code, out)
	}
	return out
}

// waitLine waits up to 15 s until the program's output has a line
// beginning with prefix, and returns that line.
func (p *proc) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(10 * time.Millisecond) {
		sc := bufio.NewScanner(strings.NewReader(p.output()))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), prefix) {
				return sc.Text()
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%q did not say %q (exited: %v); it said:\n%s", p.cmd.Args, prefix, p.exited(), p.output())
		}
	}
}

// pids are the processes in the scene's cgroup now.
func (s *scene) pids() []int {
	b, _ := os.ReadFile(filepath.Join(s.cg.Dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAll kills every process in the scene's cgroup until it is empty,
// and reaps the scene's own children.
func (s *scene) killAll() {
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(10 * time.Millisecond) {
		pids := s.pids()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			s.t.Errorf("processes %v of the scenario survive SIGKILL", pids)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		<-p.done
	}
}

// waitUntil polls cond every 10 ms for up to d, failing the test with
// what (and cond's last say) if it never holds.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, d, why)
		}
	}
}

// readPID waits until path names a live process, other than any of not,
// and returns it.
func readPID(t *testing.T, path string, not ...int) int {
	t.Helper()
	var pid int
	waitUntil(t, 15*time.Second, "pid file "+path, func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || slices.Contains(not, pid) {
			return false, fmt.Sprintf("it says %q", b)
		}
		return alive(pid), fmt.Sprintf("pid %d is not running", pid)
	})
	return pid
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	st, err := procStat(pid)
	return err == nil && st.state != "Z"
}

type stat struct {
	state string
	ppid  int
}

func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	ppid, _ := strconv.Atoi(f[1])
	return stat{state: f[0], ppid: ppid}, nil
}

// cmdline is a process's command line, its arguments joined by spaces.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// children are the live processes whose parent is pid, among the scene's.
func (s *scene) children(pid int) []int {
	var out []int
	for _, c := range s.pids() {
		if st, err := procStat(c); err == nil && st.ppid == pid && st.state != "Z" {
			out = append(out, c)
		}
	}
	return out
}

// waitGone waits until pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitUntil(t, 15*time.Second, fmt.Sprintf("pid %d exits", pid), func() (bool, string) {
		return !alive(pid), cmdline(pid) + " still runs"
	})
}

// listeners counts the TCP sockets listening on port, in this network
// namespace (IPv4 and IPv6).
func listeners(port int) int { return len(listenInodes(port)) }

// listenInodes are the inodes of the TCP sockets listening on port.
func listenInodes(port int) []string {
	var inodes []string
	suffix := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 9 && strings.HasSuffix(fields[1], suffix) && fields[3] == "0A" {
				inodes = append(inodes, fields[9])
			}
		}
	}
	slices.Sort(inodes)
	return inodes
}

// waitListening waits until at least n sockets listen on port.
func waitListening(t *testing.T, port, n int) {
	t.Helper()
	waitUntil(t, 15*time.Second, fmt.Sprintf("%d listener(s) on port %d", n, port), func() (bool, string) {
		got := listeners(port)
		return got >= n, fmt.Sprintf("%d listen", got)
	})
}

// httpOK fails the test unless http://127.0.0.1:port/ answers 200.
func httpOK(t *testing.T, port int) {
	t.Helper()
	// No keep-alive: an idle connection would leave the server an
	// ESTABLISHED socket on the port, a holder the scenario did not mean.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("the server on port %d does not serve: %v", port, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the server on port %d answers %s", port, resp.Status)
	}
}

// Checks of the judgement. Each reports the whole failure record when it
// does not hold, so that a failing run says what bindwatch wrote.

// wantCause checks a failure's cause, and its confidence unless
// confidence is "" (then it must still be one of the two values).
func wantCause(t *testing.T, f record, cause, confidence string) {
	t.Helper()
	if got := f.str("cause"); got != cause {
		t.Errorf("cause %q, want %q:\n%s", got, cause, f)
	}
	checkConfidence(t, f, confidence)
}

// checkConfidence checks that a failure says how sure its cause is:
// "certain" or "likely" (or exactly want, unless want is "").
func checkConfidence(t *testing.T, f record, want string) {
	t.Helper()
	got := f.str("confidence")
	switch {
	case want != "" && got != want:
		t.Errorf("confidence %q, want %q:\n%s", got, want, f)
	case want == "" && got != "certain" && got != "likely":
		t.Errorf("confidence %q, want \"certain\" or \"likely\":\n%s", got, f)
	}
}

// notCause checks that a failure's cause is none of causes.
func notCause(t *testing.T, f record, causes ...string) {
	t.Helper()
	if slices.Contains(causes, f.str("cause")) {
		t.Errorf("cause %q, which is wrong here:\n%s", f.str("cause"), f)
	}
	checkConfidence(t, f, "")
}

// names checks that the failure's diagnosis or hint names pid.
func names(t *testing.T, f record, pid int) {
	t.Helper()
	if !regexp.MustCompile(`\b` + strconv.Itoa(pid) + `\b`).MatchString(f.str("diagnosis") + " " + f.str("hint")) {
		t.Errorf("the diagnosis and hint do not name pid %d (%s):\n%s", pid, cmdline(pid), f)
	}
}

// holds checks that pid is among the failure's holders.
func holds(t *testing.T, f record, pid int) {
	t.Helper()
	if !slices.Contains(f.holderPIDs(), pid) {
		t.Errorf("pid %d is not among the holders:\n%s", pid, f)
	}
}

// killsPID reports whether text tells to kill pid: `kill [-SIG] … PID`.
func killsPID(text string, pid int) bool {
	return regexp.MustCompile(`\bkill(\s+-\S+)*(\s+\d+)*\s+` + strconv.Itoa(pid) + `\b`).MatchString(text)
}

// noKill checks that the hint tells to kill none of pids (a live serving
// instance: its master and its workers).
func noKill(t *testing.T, f record, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if killsPID(f.str("hint"), pid) {
			t.Errorf("the hint kills pid %d, the running instance:\n%s", pid, f)
		}
	}
}

// hintHas checks that the hint contains each of words.
func hintHas(t *testing.T, f record, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(f.str("hint"), w) {
			t.Errorf("the hint does not say %q:\n%s", w, f)
		}
	}
}

// alreadyRunning checks the verdict on a second copy of a running
// program: already_running, the running instance among the holders and
// named, the hint saying to reload it or stop it first — and no kill of
// any of its processes.
func alreadyRunning(t *testing.T, f record, running int, others ...int) {
	t.Helper()
	wantCause(t, f, "already_running", "")
	holds(t, f, running)
	names(t, f, running)
	if h := strings.ToLower(f.str("hint")); !strings.Contains(h, "reload") && !strings.Contains(h, "stop") {
		t.Errorf("the hint says neither to reload the running instance nor to stop it first:\n%s", f)
	}
	noKill(t, f, append(others, running)...)
}

// incidentOn is the report's incident on port (failing the test when
// there is none, or several).
func incidentOn(t *testing.T, rep []record, port int) record {
	t.Helper()
	var found []record
	for _, r := range ofType(rep, "incident") {
		if r.pid("port") == port {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("bindwatch report has %d incidents on port %d, want 1:\n%s", len(found), port, recordsText(rep))
	}
	return found[0]
}
