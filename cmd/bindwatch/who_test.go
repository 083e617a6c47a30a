package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// whoJSON runs `bindwatch who ARG --format json`, checks the record
// against the schema, and returns the pids of its holders and its exit
// status.
func whoJSON(t *testing.T, arg string, flags ...string) (pids []int, code int) {
	t.Helper()
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bindwatchBin, append([]string{"who", arg, "--format", "json"}, flags...)...)
	out, err := cmd.Output()
	if err != nil && cmd.ProcessState.ExitCode() < 0 {
		t.Fatalf("who %s: %v", arg, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("who output: %v: %s", err, out)
	}
	if err := schema.Validate(any(doc)); err != nil {
		t.Errorf("who output does not match docs/schema.json: %v\n%s", err, out)
	}
	// Issue 20: time and host, as every other record has them.
	hostname, _ := os.Hostname()
	if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(doc["time"])); err != nil || time.Since(at) > time.Minute || time.Since(at) < 0 || doc["host"] != hostname {
		t.Errorf("who record: time %v, host %v; want now and %q", doc["time"], doc["host"], hostname)
	}
	for _, h := range doc["holders"].([]any) {
		for _, p := range h.(map[string]any)["processes"].([]any) {
			pids = append(pids, int(p.(map[string]any)["pid"].(float64)))
		}
	}
	return pids, cmd.ProcessState.ExitCode()
}

// who, driven as a user would: it names the process holding a TCP or UDP
// port, matches the documented schema, and exits 0 held / 1 free.
func TestWhoNamesTheHolder(t *testing.T) {
	testenv.RequireRoot(t)
	for _, proto := range []string{"tcp", "udp"} {
		port := testenv.FreePort(t)
		holder := testenv.StartHelper(t, fmt.Sprintf("hold %s 0.0.0.0 %d", proto, port))
		pids, code := whoJSON(t, fmt.Sprintf("%d/%s", port, proto))
		if code != 0 || len(pids) != 1 || pids[0] != holder.PID {
			t.Errorf("who %d/%s: exit %d, pids %v; want exit 0 and the holder %d", port, proto, code, pids, holder.PID)
		}
	}
	free := testenv.FreePort(t)
	if pids, code := whoJSON(t, strconv.Itoa(free)+"/tcp"); code != 1 || len(pids) != 0 {
		t.Errorf("who on a free port: exit %d, pids %v; want exit 1, none", code, pids)
	}
}

// who agrees with ss on who holds a port, whichever way it finds the
// owners: by default (a /proc scan on a small host such as the test's,
// the BPF iterator on a large one) and with --proc-scan.
func TestWhoAgreesWithSS(t *testing.T) {
	testenv.RequireRoot(t)
	for _, flags := range [][]string{nil, {"--proc-scan"}} {
		t.Run(strings.Join(append([]string{"default"}, flags...), ""), func(t *testing.T) { whoAgreesWithSS(t, flags...) })
	}
}

func whoAgreesWithSS(t *testing.T, flags ...string) {
	port := testenv.FreePort(t)
	holder := testenv.StartHelper(t, "hold tcp 0.0.0.0 "+strconv.Itoa(port)).Cmd
	pids, _ := whoJSON(t, strconv.Itoa(port)+"/tcp", flags...)
	ss, err := exec.Command("ss", "-Htlnp", "sport = :"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var ssPids []int
	for _, m := range regexp.MustCompile(`pid=(\d+)`).FindAllStringSubmatch(string(ss), -1) {
		n, _ := strconv.Atoi(m[1])
		ssPids = append(ssPids, n)
	}
	if len(pids) != 1 || pids[0] != holder.Process.Pid || len(ssPids) != 1 || ssPids[0] != pids[0] {
		t.Errorf("who says pids %v, ss says %v (%s), the holder is %d", pids, ssPids, strings.TrimSpace(string(ss)), holder.Process.Pid)
	}
}

func TestEphemeralPortNote(t *testing.T) {
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	name, _ := testenv.NewNetns(t)
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_port_range", "40000 40100")
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_reserved_ports", "40050")
	inNS := func(args ...string) result {
		argv := append(append(testenv.InNetns(name), bindwatchBin), args...)
		return runBindwatch(t, exec.Command(argv[0], argv[1:]...))
	}
	note := "note: port 40010 lies in the ephemeral port range (net.ipv4.ip_local_port_range 40000–40100) and is not reserved: outgoing connections may take it as their local port at any time; reserve it with `sysctl -w net.ipv4.ip_local_reserved_ports=40050,40010`"
	if res := inNS("who", "40010/tcp", "--format", "text"); res.code != 1 || !strings.Contains(res.stdout, "40010/tcp: free\n  "+note) {
		t.Errorf("who on a free port in the range: want exit 1 and\n%s\ngot %s", note, res)
	}
	// Once per port, whatever the protocols (issue 20: twice, tcp and udp).
	if res := inNS("who", "40010", "40011/udp", "40010/udp", "--format", "text"); strings.Count(res.stdout, "note: port 40010 ") != 1 || strings.Count(res.stdout, "note: port 40011 ") != 1 ||
		!strings.HasSuffix(res.stdout, "40010/udp: free\n  "+note+", or use a port outside the range\n") {
		t.Errorf("who 40010 40011/udp 40010/udp: want one note per port, after its last protocol; got %s", res)
	}
	if res := inNS("wait-free", "40010", "--timeout", "0", "--format", "text"); strings.Count(res.stderr, "note:") != 1 {
		t.Errorf("wait-free 40010 (tcp and udp): want one note; got %s", res)
	}
	for _, port := range []string{"40050", "5000"} {
		if res := inNS("who", port+"/tcp", "--format", "text"); strings.Contains(res.stdout, "note:") {
			t.Errorf("who %s (reserved, or outside the range) warns: %s", port, res)
		}
	}
	res := inNS("wait-free", "40010/tcp", "--timeout", "0", "--format", "text")
	if res.code != 0 || !strings.Contains(res.stderr, "bindwatch: "+note) {
		t.Errorf("wait-free on a free port in the range: want exit 0 and the note\ngot %s", res)
	}
	res = inNS("wait-free", "40010/tcp", "--timeout", "0", "--format", "json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("wait-free JSON: %v\n%s", err, res)
	}
	if err := schema.Validate(any(doc)); err != nil {
		t.Errorf("wait_free record does not match docs/schema.json: %v\n%s", err, res.stdout)
	}
	if n, _ := doc["ephemeral_note"].(string); !strings.Contains(n, strings.TrimPrefix(note, "note: ")) {
		t.Errorf("ephemeral_note %q, want the note", n)
	}
}

// uid 65534 listens on a port, sends the socket over a unix socket nobody
// reads and closes its own copy: the socket is held only in flight. who,
// free and the tracer's failure say so — held by no process's fd table —
// instead of "no process … run with sudo"; run as a user, who says other
// users' processes are hidden from it.
func TestWhoInFlightSocket(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	h := testenv.StartHelperAsUser(t, "inflight tcp 127.0.0.1 "+p, 65534)

	_, recs := whoRecords(t, p+"/tcp")
	if len(recs) != 1 || len(recs[0].Holders) != 1 || recs[0].Holders[0].Unowned != events.UnownedNoFDTable ||
		len(recs[0].Holders[0].Processes) != 0 || recs[0].Holders[0].Inode != h.Inode {
		t.Errorf("who: %+v; want one holder, inode %d, no process, unowned %q", recs, h.Inode, events.UnownedNoFDTable)
	}
	const said = "held by no process's fd table: in flight in a unix socket's queue"
	for _, args := range [][]string{{"who", p + "/tcp"}, {"free", p + "/tcp"}, {"free", p + "/tcp", "--kill"}} {
		res := bindwatch(t, append(args, "--format", "text")...)
		if !strings.Contains(res.stdout, said) || strings.Contains(res.stdout+res.stderr, "sudo") {
			t.Errorf("%q: want %q, no word of sudo:\n%s", args, said, res)
		}
	}
	user := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bindwatchBin, "who", p+"/tcp", "--format", "text")
	if out, _ := user.Output(); !strings.Contains(string(out), "other users' processes are visible only to root") {
		t.Errorf("who as uid 65534:\n%s", out)
	}

	lines := runTraceUntil(t, func() {
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	}, func(lines [][]byte) bool {
		return bytes.Contains(bytes.Join(lines, nil), []byte(`"type":"bind_failure"`))
	}, "--port", p, "--format", "json")
	var f events.Failure
	for _, l := range lines {
		if bytes.Contains(l, []byte(`"type":"bind_failure"`)) {
			json.Unmarshal(l, &f)
		}
	}
	if len(f.Holders) != 1 || f.Holders[0].Unowned != events.UnownedNoFDTable || f.Holders[0].Inode != h.Inode {
		t.Fatalf("the failure's holders %+v; want inode %d, unowned %q", f.Holders, h.Inode, events.UnownedNoFDTable)
	}
	if text := events.Text(&f); !strings.Contains(text, "fd table") || !strings.Contains(text, "in flight") {
		t.Errorf("the failure's line does not say the socket is in no fd table:\n%s", text)
	}
}

// TestCommandsOpenTheTracersIterators (issue 24): a running tracer shares
// its BPF iterators under /sys/fs/bpf/bindwatch, and who, free, wait-free
// and doctor open them instead of loading their own; they are gone when
// the tracer stops. The port has a TIME_WAIT socket, whose SO_REUSEADDR
// only the tcp iterator reads: who must still give it.
func TestCommandsOpenTheTracersIterators(t *testing.T) {
	testenv.BPFFS(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	testenv.LeaveTimeWait(t, "127.0.0.1", port, true)
	timeWaitReuse := func() *bool {
		t.Helper()
		_, recs := whoRecords(t, p+"/tcp")
		if len(recs) != 1 || len(recs[0].Holders) != 1 || recs[0].Holders[0].State != "TIME_WAIT" {
			t.Fatalf("who %s/tcp: %+v; want one TIME_WAIT holder", p, recs)
		}
		return recs[0].Holders[0].ReuseAddr
	}
	if r := timeWaitReuse(); r == nil || !*r {
		t.Fatalf("who without a tracer: TIME_WAIT reuseaddr %v, want true", r)
	}

	tr := startTracing(t, "--port", "1", "--format", "json", "--output", filepath.Join(t.TempDir(), "out.json"))
	var shared string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if d := runDoctor(t); strings.Contains(d.Owners, "shared by a bindwatch tracer in /sys/fs/bpf/bindwatch/iters-") {
			shared = d.Owners
			break
		}
	}
	if shared == "" {
		t.Fatalf("doctor never said the iterators were a running tracer's: %q; tracer: %s", runDoctor(t).Owners, tr.stderr)
	}
	t.Logf("doctor: %s", shared)
	if r := timeWaitReuse(); r == nil || !*r {
		t.Errorf("who with the tracer's iterators: TIME_WAIT reuseaddr %v, want true", r)
	}
	tr.stop(t)
	if strings.Contains(tr.stderr.String(), "not sharing") {
		t.Errorf("the tracer did not share: %s", tr.stderr)
	}
	if left, _ := filepath.Glob("/sys/fs/bpf/bindwatch/iters-*"); len(left) != 0 {
		t.Errorf("left after the tracer stopped: %v", left)
	}
	if d := runDoctor(t); d.Owners != resolve.OwnersBPFIter {
		t.Errorf("doctor after the tracer stopped: %q, want %q", d.Owners, resolve.OwnersBPFIter)
	}
}

// sharedDirHolder returns the pid among pids that holds a shared
// iterator directory open (the tracer sharing it keeps it open, flocked),
// or 0.
func sharedDirHolder(pids ...int) int {
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "/sys/fs/bpf/bindwatch/iters-") {
				return pid
			}
		}
	}
	return 0
}

// TestSharingOutlivesTheSharingTracer (issue 24): `bindwatch run` shares
// its iterators with the commands its CMD starts (a deploy script's
// wait-free); while one tracer shares, a second does not, and when the
// first stops, the second takes the copy over (within watch's
// shareRetry, 5 s), so the commands keep one while any tracer runs.
func TestSharingOutlivesTheSharingTracer(t *testing.T) {
	testenv.BPFFS(t)
	out := filepath.Join(t.TempDir(), "run.json")
	// $PPID is bindwatch run: it must hold the shared directory (another
	// test program's tracer could share one too), and doctor open it.
	waitShared := fmt.Sprintf(`for i in $(seq 100); do ls -l /proc/$PPID/fd | grep -q ' /sys/fs/bpf/bindwatch/iters-' && %s doctor --format json | grep -q '"owner_lookup":"bpf_iter (shared by a bindwatch tracer' && exit 0; sleep 0.1; done; exit 1`, bindwatchBin)
	cmd := exec.Command(bindwatchBin, "run", "--backend", testenv.Backend(), "--output", out, "--", "sh", "-c", waitShared)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("doctor run by `bindwatch run` never opened a shared copy within 10 s: %v\n%s", err, b)
	} else if strings.Contains(string(b), "not sharing") {
		t.Errorf("bindwatch run: %s", b)
	}
	if left, _ := filepath.Glob("/sys/fs/bpf/bindwatch/iters-*"); len(left) != 0 {
		t.Errorf("left after bindwatch run ended: %v", left)
	}

	first := startTracing(t, "--port", "1", "--format", "json", "--output", filepath.Join(t.TempDir(), "first.json"))
	a := first.cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); sharedDirHolder(a) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first tracer never shared: %s", first.stderr)
		}
	}
	second := startTracing(t, "--port", "1", "--format", "json", "--output", filepath.Join(t.TempDir(), "second.json"))
	b := second.cmd.Process.Pid
	time.Sleep(time.Second)
	if sharedDirHolder(a) != a || sharedDirHolder(b) != 0 {
		t.Errorf("with both tracers running, the copy must be held by the first (pid %d) only: first %v, second (pid %d) %v", a, sharedDirHolder(a) != 0, b, sharedDirHolder(b) != 0)
	}
	first.stop(t)
	stopped := time.Now()
	for sharedDirHolder(b) == 0 {
		if time.Since(stopped) > 15*time.Second {
			t.Fatalf("the second tracer did not take sharing over within 15 s of the first's stop: %s", second.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the second tracer shared %v after the first stopped", time.Since(stopped).Round(time.Millisecond))
	if d := runDoctor(t); !strings.Contains(d.Owners, "shared by a bindwatch tracer") {
		t.Errorf("doctor with the second tracer sharing: %q", d.Owners)
	}
	second.stop(t)
	for _, tr := range []*tracing{first, second} {
		if strings.Contains(tr.stderr.String(), "not sharing") {
			t.Errorf("a tracer did not share: %s", tr.stderr)
		}
	}
	if left, _ := filepath.Glob("/sys/fs/bpf/bindwatch/iters-*"); len(left) != 0 {
		t.Errorf("left after both tracers stopped: %v", left)
	}
}
