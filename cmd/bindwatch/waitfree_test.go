package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// wait-free waits while the port is held, and returns once its holder
// exits. The holder lets go only after wait-free said it is held.
func TestWaitFreeReturnsWhenHolderExits(t *testing.T) {
	port := testenv.FreePort(t)
	h := startHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port))
	cmd := exec.Command(bindwatchBin, "wait-free", "--format", "text", fmt.Sprintf("%d/tcp", port), "--timeout", "20s")
	var released time.Time
	res := runBindwatch(t, cmd, releaseWhenSaid(t, cmd, h, false, "is held", &released))
	if res.code != 0 {
		t.Fatalf("want exit 0 once the holder exits; %s", res)
	}
	if d := time.Since(released); d > 5*time.Second {
		t.Errorf("returned %s after the holder let go", d)
	}
	for _, want := range []string{fmt.Sprintf("%d/tcp is held", port), "LISTEN 0.0.0.0:" + strconv.Itoa(port), "pid " + strconv.Itoa(h.pid()), "free after"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q; %s", want, res)
		}
	}
	if n := strings.Count(res.stderr, "is held"); n != 1 {
		t.Errorf("the holder was reported %d times; want once (it did not change); %s", n, res)
	}
}

func TestWaitFreeTimesOutNamingTheHolder(t *testing.T) {
	port := testenv.FreePort(t)
	h := startPython(t, holdTCP, strconv.Itoa(port))
	res := bindwatch(t, "wait-free", "--format", "text", strconv.Itoa(port), "--timeout", "700ms")
	if res.code != 1 {
		t.Fatalf("want exit 1 on timeout; %s", res)
	}
	if res.took < 700*time.Millisecond || res.took > 10*time.Second {
		t.Errorf("took %s with --timeout 700ms", res.took)
	}
	for _, want := range []string{
		fmt.Sprintf("%d/tcp is still held after 700ms", port),
		fmt.Sprintf("pid %d python3", h.pid()),
		"why: ", "fix: ", fmt.Sprintf("bindwatch free %d/tcp", port),
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q; %s", want, res)
		}
	}
	if strings.Contains(res.stderr, fmt.Sprintf("%d/udp is", port)) {
		t.Errorf("udp reported held, but only tcp is; %s", res)
	}
	if !h.running() {
		t.Error("wait-free must never stop the holder")
	}
}

// TestWaitFreeTimeWait: a port left in TIME_WAIT by a real connection
// (server closed first) is held for a program without SO_REUSEADDR, free
// for one with it if the old socket had it too, and held for it if not —
// and the answer explains TIME_WAIT truthfully.
func TestWaitFreeTimeWait(t *testing.T) {
	port := testenv.FreePort(t)
	testenv.LeaveTimeWait(t, "127.0.0.1", port, true)
	arg := fmt.Sprintf("%d/tcp", port)

	res := bindwatch(t, "wait-free", "--format", "text", arg, "--timeout", "0")
	if res.code != 1 {
		t.Fatalf("TIME_WAIT, no --reuseaddr: want exit 1; %s", res)
	}
	for _, want := range []string{"TIME_WAIT: 1 closed connection", "60 s", "tcp_fin_timeout", "--reuseaddr"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q; %s", want, res)
		}
	}
	if m := regexp.MustCompile(`expires in (\d+)s`).FindStringSubmatch(res.stderr); m == nil {
		t.Errorf("no remaining time; %s", res)
	} else if left, _ := strconv.Atoi(m[1]); left < 50 || left > 60 {
		t.Errorf("TIME_WAIT expires in %ds, right after the close: want about 60s; %s", left, res)
	}
	if res := bindwatch(t, "wait-free", "--format", "text", arg, "--timeout", "0", "--reuseaddr"); res.code != 0 {
		t.Errorf("TIME_WAIT from a socket with SO_REUSEADDR, --reuseaddr: want exit 0 (free); %s", res)
	}

	port = testenv.FreePort(t)
	testenv.LeaveTimeWait(t, "127.0.0.1", port, false)
	res = bindwatch(t, "wait-free", "--format", "text", fmt.Sprintf("%d/tcp", port), "--timeout", "500ms", "--reuseaddr")
	if res.code != 1 {
		t.Fatalf("TIME_WAIT from a socket without SO_REUSEADDR, --reuseaddr: want exit 1 (the kernel wants it on both); %s", res)
	}
	testenv.RequireRoot(t) // the TIME_WAIT socket's own flag is read by a BPF iterator
	if !strings.Contains(res.stderr, "both") {
		t.Errorf("the diagnosis should say SO_REUSEADDR is needed on both sockets; %s", res)
	}
}

// TestWaitFreeTimeWaitOutlastsFinTimeout: in a fresh network namespace
// with net.ipv4.tcp_fin_timeout=1, TIME_WAIT still holds the port 1.5 s
// after the close, with more than 50 s left: tcp_fin_timeout does not
// shorten TIME_WAIT.
func TestWaitFreeTimeWaitOutlastsFinTimeout(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	script := fmt.Sprintf(`set -e
ip link set lo up
echo 1 > /proc/sys/net/ipv4/tcp_fin_timeout
python3 -c '
import socket, time
srv = socket.socket(); srv.bind(("127.0.0.1", %[1]d)); srv.listen()
c = socket.create_connection(("127.0.0.1", %[1]d)); a, _ = srv.accept()
a.close(); time.sleep(0.05); c.close(); srv.close(); time.sleep(0.05)'
sleep 1.5
exec %[2]s wait-free %[1]d/tcp --timeout 0 --format text`, port, bindwatchBin)
	out, err := exec.Command("unshare", "--net", "sh", "-c", script).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit 1 (TIME_WAIT still there after 1.5s with tcp_fin_timeout=1): %v\n%s", err, out)
	}
	m := regexp.MustCompile(`TIME_WAIT: 1 closed connection, the last expires in (\d+)s`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no TIME_WAIT reported:\n%s", out)
	}
	if left, _ := strconv.Atoi(string(m[1])); left < 50 {
		t.Errorf("TIME_WAIT expires in %ds, 1.5s after the close with tcp_fin_timeout=1: want ~58s\n%s", left, out)
	}
}

// TestWaitFreeBindsOncePerChange: while the holder does not change,
// wait-free does not bind the port every 100ms — each refused bind is a
// failure that bindwatch tracing the host reports (when wait-free cannot
// mark its test binds: without CAP_NET_ADMIN, as here) — but once, then
// about once a second.
func TestWaitFreeBindsOncePerChange(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	out := t.TempDir() + "/binds.jsonl"
	// wait-free as root without CAP_NET_ADMIN and CAP_NET_RAW: a helper
	// drops them from its bounding set and execs it.
	noNetAdmin := testenv.Helper(fmt.Sprintf("nonetadmin %s wait-free %d/tcp --timeout 2500ms", bindwatchBin, port))
	cmd := exec.Command(bindwatchBin, append([]string{"run", "--backend", testenv.Backend(), "--port", strconv.Itoa(port), "--output", out, "--"},
		noNetAdmin.Args...)...)
	cmd.Env = noNetAdmin.Env
	res := runBindwatch(t, cmd)
	if res.code != 1 {
		t.Fatalf("want wait-free's exit 1 through run; %s", res)
	}
	stop := lastStop(t, out)
	if stop.Failures < 1 || stop.Failures > 5 {
		t.Errorf("wait-free made %d failed binds in 2.5s against an unchanging holder: want 1 and about one a second (≤5), not one per 100ms; %s", stop.Failures, res)
	}
}

func TestWaitFreeUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"wait-free"}, "needs at least one PORT"},
		{[]string{"wait-free", "http"}, "want a number"},
		{[]string{"wait-free", "8080/sctp"}, "not supported"},
		{[]string{"wait-free", "8080", "--timeout", "-1s"}, "must not be negative"},
		{[]string{"wait-free", "8080", "--addr", "localhost"}, "not an IP address"},
		{[]string{"wait-free", "8080", "--bogus"}, "unknown flag --bogus"},
		{[]string{"wait-free", "8080", "--format", "xml"}, `--format "xml"`},
	} {
		res := bindwatch(t, c.args...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("bindwatch %q: want exit 2 saying %q; %s", c.args, c.want, res)
		}
		checkUsageError(t, c.args, res.stderr)
	}
	// Flags may follow the ports. (A port outside the ephemeral range:
	// one inside gets a note, see TestEphemeralPortNote.)
	port := freePortOutsideEphemeralRange(t)
	if res := bindwatch(t, "wait-free", "--format", "text", strconv.Itoa(port), "--timeout", "0", "--addr", "127.0.0.1", "--reuseaddr"); res.code != 0 || res.stderr != "" {
		t.Errorf("a free port checked once: want exit 0, silent; %s", res)
	}
	if res := bindwatch(t, "wait-free", "--help"); res.code != 0 || !strings.Contains(res.stdout, "Examples:") || !strings.Contains(res.stdout, "Exit status") {
		t.Errorf("wait-free --help: want examples and exit statuses; %s", res)
	}
}

// waitFreeRecords runs `bindwatch wait-free --format json ARGS...` and
// returns its held records and its wait_free records, each checked
// against the schema; wait_free records must come last.
func waitFreeRecords(t *testing.T, args ...string) (result, []events.HeldRecord, []events.WaitFreeRecord) {
	t.Helper()
	res := bindwatch(t, append([]string{"wait-free", "--format", "json"}, args...)...)
	held, ended := waitFreeLines(t, res)
	return res, held, ended
}

// waitFreeLines decodes wait-free's JSON output: held records, then
// wait_free records.
func waitFreeLines(t *testing.T, res result) ([]events.HeldRecord, []events.WaitFreeRecord) {
	t.Helper()
	var held []events.HeldRecord
	var ended []events.WaitFreeRecord
	for _, l := range jsonOutput(t, res) {
		switch l.typ {
		case events.TypeHeld:
			if len(ended) > 0 {
				t.Errorf("a held record after a wait_free record; %s", res)
			}
			held = append(held, decodeLine[events.HeldRecord](t, l))
		case events.TypeWaitFree:
			ended = append(ended, decodeLine[events.WaitFreeRecord](t, l))
		default:
			t.Fatalf("wait-free wrote a %q record; %s", l.typ, res)
		}
	}
	return held, ended
}

func TestWaitFreeJSONTimesOutNamingTheHolder(t *testing.T) {
	port := testenv.FreePort(t)
	h := startPython(t, holdTCP, strconv.Itoa(port))
	res, held, ended := waitFreeRecords(t, strconv.Itoa(port), "--timeout", "700ms")
	if res.code != 1 || len(ended) != 2 {
		t.Fatalf("want exit 1 on timeout and a wait_free record per protocol; %s", res)
	}
	if res.stderr != "" {
		t.Errorf("JSON mode wrote to stderr; %s", res)
	}
	if len(held) != 1 || held[0].Proto != "tcp" || !slices.Equal(holderPIDs(held[0].Holders), []int{h.pid()}) || held[0].Refusal.Errno != "EADDRINUSE" {
		t.Errorf("want one held record, tcp, naming pid %d, EADDRINUSE; %s", h.pid(), res)
	}
	tcp, udp := ended[0], ended[1]
	if tcp.Proto != "tcp" || tcp.Free || !slices.Equal(holderPIDs(tcp.Holders), []int{h.pid()}) || tcp.Diagnosis == "" {
		t.Errorf("tcp: want still held by pid %d, diagnosed; %s", h.pid(), res)
	}
	if tcp.TimeoutMS != 700 || tcp.WaitedMS < 700 || tcp.WaitedMS > 10_000 {
		t.Errorf("tcp: timeout_ms %d waited_ms %d, want 700 and about 700; %s", tcp.TimeoutMS, tcp.WaitedMS, res)
	}
	if udp.Proto != "udp" || !udp.Free || len(udp.Holders) != 0 || udp.Refusal != nil {
		t.Errorf("udp: want free; %s", res)
	}
	if !h.running() {
		t.Error("wait-free must never stop the holder")
	}
}

func TestWaitFreeJSONReturnsWhenHolderExits(t *testing.T) {
	port := testenv.FreePort(t)
	h := startHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port))
	cmd := exec.Command(bindwatchBin, "wait-free", "--format", "json", fmt.Sprintf("%d/tcp", port), "--timeout", "20s")
	var released time.Time
	res := runBindwatch(t, cmd, releaseWhenSaid(t, cmd, h, true, `"type":"held"`, &released))
	held, ended := waitFreeLines(t, res)
	if res.code != 0 || len(ended) != 1 {
		t.Fatalf("want exit 0 once the holder exits, and one wait_free record; %s", res)
	}
	if len(held) != 1 || !slices.Equal(holderPIDs(held[0].Holders), []int{h.pid()}) {
		t.Errorf("want one held record naming pid %d (the holder did not change); %s", h.pid(), res)
	}
	if end := ended[0]; !end.Free || len(end.Holders) != 0 || end.WaitedMS < held[0].WaitedMS || time.Since(released) > 5*time.Second {
		t.Errorf("want free, no holders, soon after the holder let go; %s", res)
	}
}

// freePortOutsideEphemeralRange returns a port below
// net.ipv4.ip_local_port_range that is free for TCP and UDP right now.
func freePortOutsideEphemeralRange(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := strconv.Atoi(strings.Fields(string(b))[0])
	for port := 20000 + os.Getpid()%1000; port < lo; port++ {
		free := true
		for _, c := range []struct{ proto, addr string }{{"tcp", "0.0.0.0"}, {"udp", "::"}} {
			fd, err := testenv.Socket(c.proto, c.addr, testenv.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			free = free && testenv.Bind(fd, c.addr, port) == nil
			unix.Close(fd)
		}
		if free {
			return port
		}
	}
	t.Fatalf("no free port below the ephemeral range (%d)", lo)
	return 0
}
