package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// ignoreTERM holds a TCP port and ignores SIGTERM.
const ignoreTERM = `import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(120)`

// otherNetns binds and listens in this network namespace, then moves the
// process into a new one (unshare(CLONE_NEWNET)): its socket stays here,
// its process is elsewhere.
const otherNetns = `import ctypes, socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:
    sys.exit("unshare: errno %d" % ctypes.get_errno())
print("ready", flush=True)
time.sleep(120)`

// killedBy reports whether a holder's wait error says signal sig killed it.
func killedBy(err error, sig syscall.Signal) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// startHTTPServer runs `python3 -m http.server PORT`, which SIGTERM stops,
// and waits until it accepts connections (or exits; python's start takes
// seconds on a loaded machine, hence testenv.StartTimeout as the bound).
func startHTTPServer(t *testing.T, port int) *holder {
	t.Helper()
	cmd := exec.Command("python3", "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("python3 -m http.server (.ci/run installs python3): %v", err)
	}
	h := &holder{cmd: cmd, done: make(chan error, 1)}
	go func() { h.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		h.wait(t, 5*time.Second)
	})
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			return h
		}
		if !h.running() || time.Now().After(deadline) {
			t.Fatalf("python3 -m http.server %d did not start listening", port)
		}
	}
}

func TestFreeDryRunSignalsNothing(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := startHTTPServer(t, port)
	res := bindwatch(t, "free", "--format", "text", strconv.Itoa(port))
	if res.code != 1 {
		t.Fatalf("dry run of a held port: want exit 1; %s", res)
	}
	for _, want := range []string{
		fmt.Sprintf("%d/tcp: held; --kill would send SIGTERM to:", port),
		fmt.Sprintf("pid %d python3", h.pid()), fmt.Sprintf("[LISTEN 127.0.0.1:%d/tcp]", port),
		fmt.Sprintf("%d/udp: free", port), "dry run: nothing was signalled",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q; %s", want, res)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if !h.running() {
		t.Error("a dry run stopped the holder")
	}
	if res := bindwatch(t, "free", "--format", "text", strconv.Itoa(testenv.FreePort(t))+"/tcp"); res.code != 0 || !strings.Contains(res.stdout, "/tcp: free") {
		t.Errorf("dry run of a free port: want exit 0 saying free; %s", res)
	}
}

func TestFreeKillStopsSIGTERMHolder(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := startHTTPServer(t, port)
	res := bindwatch(t, "free", "--format", "text", fmt.Sprintf("%d/tcp", port), "--kill", "--grace", "5s")
	if res.code != 0 {
		t.Fatalf("want exit 0 once the holder stopped; %s", res)
	}
	if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGTERM) {
		t.Errorf("holder ended with %v, want killed by SIGTERM", err)
	}
	for _, want := range []string{
		fmt.Sprintf("%d/tcp: sent SIGTERM to pid %d python3", port, h.pid()),
		fmt.Sprintf("%d/tcp: free (released after", port),
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q; %s", want, res)
		}
	}
	// The process one-liner (events.ProcessShort): pid and command line;
	// argv[0] is python3's path where an installer like pyenv execs it.
	if want := fmt.Sprintf(`pid %d \([^)]*python3 -m http\.server %d --bind 127\.0\.0\.1\) exited after SIGTERM`, h.pid(), port); !regexp.MustCompile(want).MatchString(res.stdout) {
		t.Errorf("stdout does not match %q; %s", want, res)
	}
	if strings.Contains(res.stdout, "SIGKILL") {
		t.Errorf("SIGKILL sent without --force; %s", res)
	}
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{}) // really free
}

// blockTERM holds a TCP port and blocks SIGTERM (its only thread).
const blockTERM = `import signal, socket, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(120)`

// TestFreeForceEscalates: a holder that ignores SIGTERM, or blocks it,
// survives --kill (exit 1), and only --force sends SIGKILL. free reads
// that from /proc/PID/status (SigIgn, SigBlk) and says so up front, with
// the advice to add --force — the dry run too — instead of waiting out
// the grace period first (issue 20); with --force, SIGKILL follows at once.
func TestFreeForceEscalates(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct{ code, deaf string }{{ignoreTERM, "ignores SIGTERM"}, {blockTERM, "blocks SIGTERM in every thread"}} {
		t.Run(c.deaf, func(t *testing.T) {
			port := testenv.FreePort(t)
			h := startPython(t, c.code, strconv.Itoa(port))
			arg := fmt.Sprintf("%d/tcp", port)
			const grace = 40 * time.Second // never waited out

			res := bindwatch(t, "free", "--format", "text", arg)
			if want := "it " + c.deaf + ": --kill alone will not stop it; --kill --force sends it SIGKILL at once"; !strings.Contains(res.stdout, want) {
				t.Errorf("dry run: stdout lacks %q; %s", want, res)
			}
			res = bindwatch(t, "free", "--format", "text", arg, "--kill", "--grace", grace.String())
			if res.code != 1 {
				t.Fatalf("SIGTERM %s, no --force: want exit 1; %s", c.deaf, res)
			}
			if res.took >= grace {
				t.Errorf("waited out the %s grace period (%s) for a holder that %s", grace, res.took, c.deaf)
			}
			upFront := fmt.Sprintf("%s (/proc/%d/status): it will not exit on it; add --force", c.deaf, h.pid())
			i, j := strings.Index(res.stdout, upFront), strings.Index(res.stdout, arg+": still held")
			if i < 0 || j < 0 || i > j {
				t.Errorf("stdout does not say %q before the port is still held; %s", upFront, res)
			}
			if want := fmt.Sprintf(`pid %d \([^)]*python3 -c import signal, socket[^)]*\), which %s, still running after SIGTERM \(hint: add --force`, h.pid(), c.deaf); !regexp.MustCompile(want).MatchString(res.stdout) {
				t.Errorf("stdout does not match %q; %s", want, res)
			}
			if strings.Contains(res.stdout, "SIGKILL to pid") || !h.running() {
				t.Fatalf("SIGKILL without --force; %s", res)
			}
			_, recs := freeRecords(t, arg, "--kill", "--grace", grace.String())
			if len(recs) != 1 || len(recs[0].Actions) != 1 || recs[0].Actions[0].Reason != "it "+c.deaf {
				t.Errorf("JSON: want one still_running action whose reason is %q; %+v", "it "+c.deaf, recs)
			}

			res = bindwatch(t, "free", "--format", "text", arg, "--kill", "--grace", grace.String(), "--force")
			if res.code != 0 || res.took >= grace {
				t.Fatalf("with --force: want exit 0, without waiting out the grace period; %s", res)
			}
			if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGKILL) {
				t.Errorf("holder ended with %v, want killed by SIGKILL", err)
			}
			for _, want := range []string{"sent SIGTERM", "sending SIGKILL without waiting the grace period", fmt.Sprintf("sent SIGKILL to pid %d", h.pid()), arg + ": free (released after", "exited after SIGKILL"} {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("stdout lacks %q; %s", want, res)
				}
			}
		})
	}
}

// TestFreeRefusesItsParent: bindwatch's parent (here this test) holds the
// port; free --kill --force refuses to touch it.
func TestFreeRefusesItsParent(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	res := bindwatch(t, "free", "--format", "text", fmt.Sprintf("%d/tcp", port), "--kill", "--force", "--grace", "200ms")
	if res.code != 1 {
		t.Fatalf("want exit 1: the port stays held; %s", res)
	}
	if !strings.Contains(res.stdout, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(res.stdout, "bindwatch's parent") {
		t.Errorf("the refusal should name the parent; %s", res)
	}
	if strings.Contains(res.stdout, "sent ") {
		t.Errorf("a signal was sent; %s", res)
	}
}

// TestFreeRefusesItsGrandparent: the holder is an ancestor further up than
// bindwatch's parent (this test, running a shell that runs bindwatch).
func TestFreeRefusesItsGrandparent(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	// The shell stays bindwatch's parent: a command follows it.
	cmd := exec.Command("sh", "-c", `"$0" free --format text "$1" --kill --force --grace 200ms; s=$?; exit $s`, bindwatchBin, fmt.Sprintf("%d/tcp", port))
	res := runBindwatch(t, cmd)
	if res.code != 1 {
		t.Fatalf("want exit 1: the port stays held; %s", res)
	}
	if !strings.Contains(res.stdout, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(res.stdout, "it is an ancestor of bindwatch") {
		t.Errorf("the refusal should name this test as an ancestor; %s", res)
	}
	if strings.Contains(res.stdout, "sent ") {
		t.Errorf("a signal was sent; %s", res)
	}
}

// TestFreeRefusesItself: bindwatch inherited the listening socket (its
// parent handed it over and closed its own copy): the only holder is
// bindwatch itself, which it does not signal.
func TestFreeRefusesItself(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	fd, err := testenv.Socket("tcp", "0.0.0.0", testenv.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Bind(fd, "0.0.0.0", port); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	listener := os.NewFile(uintptr(fd), "listener")
	// The shell waits for a line, so that this test has closed its copy
	// of the socket before bindwatch (exec'd in its place) looks.
	cmd := exec.Command("sh", "-c", `read go; exec "$0" free --format text "$1" --kill --force --grace 200ms`, bindwatchBin, fmt.Sprintf("%d/tcp", port))
	cmd.ExtraFiles = []*os.File{listener}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	res := runBindwatch(t, cmd, func(_, _ *testenv.SyncBuffer) {
		listener.Close()
		stdin.Write([]byte("go\n"))
	})
	if res.code != 1 {
		t.Fatalf("want exit 1: the port stays held; %s", res)
	}
	if !strings.Contains(res.stdout, fmt.Sprintf("pid %d", cmd.Process.Pid)) || !strings.Contains(res.stdout, "it is bindwatch itself") {
		t.Errorf("the refusal should name bindwatch itself (pid %d); %s", cmd.Process.Pid, res)
	}
	if strings.Contains(res.stdout, "sent ") {
		t.Errorf("a signal was sent; %s", res)
	}
}

// TestFreeRefusesOtherNetns: a process that moved to another network
// namespace keeps a socket in this one; free refuses to stop it unless
// --all-netns.
func TestFreeRefusesOtherNetns(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := startPython(t, otherNetns, strconv.Itoa(port))
	arg := fmt.Sprintf("%d/tcp", port)
	res := bindwatch(t, "free", "--format", "text", arg, "--kill", "--grace", "200ms")
	if res.code != 1 || !strings.Contains(res.stdout, "another network namespace") || !strings.Contains(res.stdout, "--all-netns") || strings.Contains(res.stdout, "sent ") {
		t.Fatalf("want a refusal naming the other namespace and --all-netns, exit 1, nothing sent; %s", res)
	}
	if !h.running() {
		t.Fatal("the holder was stopped")
	}
	res = bindwatch(t, "free", "--format", "text", arg, "--kill", "--all-netns", "--grace", "5s")
	if res.code != 0 || !strings.Contains(res.stdout, fmt.Sprintf("sent SIGTERM to pid %d", h.pid())) {
		t.Fatalf("with --all-netns: want it stopped, exit 0; %s", res)
	}
	if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGTERM) {
		t.Errorf("holder ended with %v, want killed by SIGTERM", err)
	}
}

// TestFreeAllNetnsFindsContainerHolder: a server inside another network
// namespace holds the port there only; --all-netns finds and stops it.
func TestFreeAllNetnsFindsContainerHolder(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := startHolder(t, exec.Command("unshare", "--net", "python3", "-c", holdTCP, strconv.Itoa(port)))
	arg := fmt.Sprintf("%d/tcp", port)
	if res := bindwatch(t, "free", "--format", "text", arg); res.code != 0 || !strings.Contains(res.stdout, arg+": free") {
		t.Errorf("in bindwatch's namespace the port is free; %s", res)
	}
	res := bindwatch(t, "free", "--format", "text", arg, "--all-netns", "--kill")
	if res.code != 0 {
		t.Fatalf("want exit 0; %s", res)
	}
	for _, want := range []string{arg + " in netns ", fmt.Sprintf("sent SIGTERM to pid %d", h.pid()), "free (released after"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q; %s", want, res)
		}
	}
	if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGTERM) {
		t.Errorf("holder ended with %v, want killed by SIGTERM", err)
	}
}

// TestFreeTimeWaitIsExplained: a port held only by TIME_WAIT has no
// process to stop; free says so and what helps, and signals nothing.
func TestFreeTimeWaitIsExplained(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.LeaveTimeWait(t, "127.0.0.1", port, true)
	arg := fmt.Sprintf("%d/tcp", port)
	res := bindwatch(t, "free", "--format", "text", arg, "--kill", "--force")
	if res.code != 1 {
		t.Fatalf("want exit 1: TIME_WAIT stays; %s", res)
	}
	for _, want := range []string{"only TIME_WAIT sockets remain", "which no process holds", "60 s", "tcp_fin_timeout does not shorten it", "both", "--reuseaddr"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q; %s", want, res)
		}
	}
	if strings.Contains(res.stdout, "sent ") {
		t.Errorf("a signal was sent; %s", res)
	}
	// The TIME_WAIT socket had SO_REUSEADDR: a program with it may bind.
	if res := bindwatch(t, "free", "--format", "text", arg, "--kill", "--reuseaddr"); res.code != 0 || !strings.Contains(res.stdout, arg+": free") {
		t.Errorf("with --reuseaddr: want exit 0, free; %s", res)
	}
}

func TestFreeUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"free"}, "needs at least one PORT"},
		{[]string{"free", "8080", "--force"}, "--force needs --kill"},
		{[]string{"free", "8080", "--kill", "--signal", "KILL"}, "add --force"},
		{[]string{"free", "8080", "--kill", "--signal", "TERMINATE"}, "unknown signal"},
		{[]string{"free", "8080", "--kill", "--grace", "0s"}, "must be positive"},
		{[]string{"free", "99999"}, "want a number from 1 to 65535"},
		{[]string{"free", "8080", "--format", "xml"}, `--format "xml"`},
	} {
		res := bindwatch(t, c.args...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("bindwatch %q: want exit 2 saying %q; %s", c.args, c.want, res)
		}
		checkUsageError(t, c.args, res.stderr)
	}
	if res := bindwatch(t, "free", "--help"); res.code != 0 || !strings.Contains(res.stdout, "Examples:") || !strings.Contains(res.stdout, "Exit status") {
		t.Errorf("free --help: want examples and exit statuses; %s", res)
	}
}

// TestFreeClearsEveryAddress: one process holds 0.0.0.0:PORT, another
// [::]:PORT (IPv6 only, as nginx listens); both stand in the way of a
// server, and free stops both in one go.
func TestFreeClearsEveryAddress(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	v4 := startHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port))
	v6 := startPython(t, `import socket, sys, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(("::", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(120)`, strconv.Itoa(port))
	arg := fmt.Sprintf("%d/tcp", port)
	res := bindwatch(t, "free", "--format", "text", arg, "--kill", "--grace", "5s")
	if res.code != 0 {
		t.Fatalf("want exit 0; %s", res)
	}
	for _, h := range []*holder{v4, v6} {
		if !strings.Contains(res.stdout, fmt.Sprintf("sent SIGTERM to pid %d", h.pid())) {
			t.Errorf("pid %d not signalled; %s", h.pid(), res)
		}
		if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGTERM) {
			t.Errorf("pid %d ended with %v, want killed by SIGTERM", h.pid(), err)
		}
	}
}

// jsonLine is one line of bindwatch's standard output with --format json.
type jsonLine struct {
	typ string
	raw []byte
}

// jsonOutput checks that every line of res's standard output is a JSON
// object matching docs/schema.json, and returns the lines.
func jsonOutput(t *testing.T, res result) []jsonLine {
	t.Helper()
	var lines []jsonLine
	for _, raw := range strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n") {
		var doc map[string]any
		if err := json.Unmarshal([]byte(raw), &doc); err != nil {
			t.Fatalf("stdout line is not a JSON object: %v: %q; %s", err, raw, res)
		}
		if err := recordSchema().Validate(any(doc)); err != nil {
			t.Errorf("line does not match docs/schema.json: %v\n%s", err, raw)
		}
		typ, _ := doc["type"].(string)
		lines = append(lines, jsonLine{typ: typ, raw: []byte(raw)})
	}
	return lines
}

// decodeLine decodes a record whose fields the schema has checked.
func decodeLine[T any](t *testing.T, l jsonLine) T {
	t.Helper()
	var rec T
	if err := json.Unmarshal(l.raw, &rec); err != nil {
		t.Fatalf("decode %s record: %v: %s", l.typ, err, l.raw)
	}
	return rec
}

// freeRecords runs `bindwatch free --format json ARGS...` and returns its
// records, each checked against the schema.
func freeRecords(t *testing.T, args ...string) (result, []events.FreeRecord) {
	t.Helper()
	res := bindwatch(t, append([]string{"free", "--format", "json"}, args...)...)
	var recs []events.FreeRecord
	for _, l := range jsonOutput(t, res) {
		if l.typ != events.TypeFree {
			t.Fatalf("free wrote a %q record; %s", l.typ, res)
		}
		recs = append(recs, decodeLine[events.FreeRecord](t, l))
	}
	return res, recs
}

// holderPIDs lists the processes of holders, in order.
func holderPIDs(holders []events.Holder) []int {
	var pids []int
	for _, h := range holders {
		for _, p := range h.Processes {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// actionsText is a record's actions as "pid SIGNAL result" lines.
func actionsText(actions []events.FreeAction) string {
	var s []string
	for _, a := range actions {
		s = append(s, fmt.Sprintf("%d %s %s", a.PID, a.Signal, a.Result))
	}
	return strings.Join(s, "; ")
}

func TestFreeJSONKillStopsSIGTERMHolder(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := startHTTPServer(t, port)
	res, recs := freeRecords(t, fmt.Sprintf("%d/tcp", port), "--kill", "--grace", "5s")
	if res.code != 0 || len(recs) != 1 {
		t.Fatalf("want exit 0 and one record; %s", res)
	}
	if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGTERM) {
		t.Errorf("holder ended with %v, want killed by SIGTERM", err)
	}
	rec := recs[0]
	if rec.Port != uint16(port) || rec.Proto != "tcp" || rec.DryRun || rec.Signal != "SIGTERM" || rec.Force || rec.GraceMS != 5000 {
		t.Errorf("record says port %d/%s dry_run %v signal %s force %v grace_ms %d; want %d/tcp, a real SIGTERM run with 5s grace; %s",
			rec.Port, rec.Proto, rec.DryRun, rec.Signal, rec.Force, rec.GraceMS, port, res)
	}
	if pids := holderPIDs(rec.Holders); !slices.Equal(pids, []int{h.pid()}) {
		t.Errorf("holders before the action name pids %v, want [%d]; %s", pids, h.pid(), res)
	}
	if want := fmt.Sprintf("%d SIGTERM exited", h.pid()); actionsText(rec.Actions) != want {
		t.Errorf("actions %q, want %q; %s", actionsText(rec.Actions), want, res)
	}
	if a := rec.Actions[0]; a.Comm != "python3" || !slices.Contains(a.Cmdline, "http.server") || a.StartTime.IsZero() {
		t.Errorf("the action should name the process (comm, cmdline, start time): %+v", a)
	}
	if !rec.Free || rec.ReleasedAfterMS <= 0 || rec.HoldersAfter == nil || len(rec.HoldersAfter) != 0 || rec.Hint != "" {
		t.Errorf("want free, released after some ms, no holders after, no hint; %s", res)
	}
	if res.stderr != "" {
		t.Errorf("JSON mode wrote to stderr; %s", res)
	}
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{}) // really free
}

// TestFreeJSONDryRun: without --kill, nothing is signalled; the record
// says what --kill would send, to whom. A bare port is one record per
// protocol, and JSON is the default when stdout is not a terminal.
func TestFreeJSONDryRun(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := startHTTPServer(t, port)
	res, recs := freeRecords(t, strconv.Itoa(port))
	if res.code != 1 || len(recs) != 2 {
		t.Fatalf("dry run of a held port: want exit 1 and a record per protocol; %s", res)
	}
	tcp, udp := recs[0], recs[1]
	if tcp.Proto != "tcp" || !tcp.DryRun || tcp.Free || tcp.HoldersAfter != nil || tcp.ReleasedAfterMS != 0 {
		t.Errorf("tcp: want a dry run, held, with no end state of its own; %s", res)
	}
	if pids := holderPIDs(tcp.Holders); !slices.Equal(pids, []int{h.pid()}) {
		t.Errorf("tcp holders name pids %v, want [%d]; %s", pids, h.pid(), res)
	}
	if want := fmt.Sprintf("%d SIGTERM dry_run", h.pid()); actionsText(tcp.Actions) != want {
		t.Errorf("tcp actions %q, want %q; %s", actionsText(tcp.Actions), want, res)
	}
	if tcp.Cause != events.CauseAddressOverlap {
		t.Errorf("tcp: cause %q, want %s (the test bind of 0.0.0.0 overlaps the holder's 127.0.0.1); %s", tcp.Cause, events.CauseAddressOverlap, res)
	}
	if udp.Proto != "udp" || !udp.Free || len(udp.Holders) != 0 || len(udp.Actions) != 0 || udp.Refusal != nil || udp.Cause != "" {
		t.Errorf("udp: want free, no holders, no actions, no cause; %s", res)
	}
	time.Sleep(100 * time.Millisecond)
	if !h.running() {
		t.Error("a dry run stopped the holder")
	}

	// No --format, stdout a pipe: JSON.
	free := fmt.Sprintf("%d/tcp", testenv.FreePort(t))
	res = bindwatch(t, "free", free)
	if lines := jsonOutput(t, res); res.code != 0 || len(lines) != 1 || lines[0].typ != events.TypeFree {
		t.Errorf("free %s, stdout not a terminal: want exit 0 and one free record; %s", free, res)
	}
}

// slowToDie is ignoreTERM with 512 MiB written to: the kernel frees a
// killed process's memory before it closes its files, so its port is
// released tens of milliseconds after SIGKILL (60 ms measured here).
const slowToDie = `memory = b"x" * (512 << 20)
` + ignoreTERM

// TestFreeJSONForceEscalates: the SIGKILL that follows an ignored SIGTERM
// is an action of its own, and free waits for the killed holder to die
// before its last check of the port, although it was deaf to the first
// signal. (It once checked at once: on a loaded machine, and always with a
// holder slow to die, the port was still held and free exited 1, with
// "its holders exited, but the port is held again".)
func TestFreeJSONForceEscalates(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct{ name, code string }{{"ignores SIGTERM", ignoreTERM}, {"slow to die", slowToDie}} {
		t.Run(c.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			h := startPython(t, c.code, strconv.Itoa(port))
			res, recs := freeRecords(t, fmt.Sprintf("%d/tcp", port), "--kill", "--grace", "700ms", "--force")
			if res.code != 0 || len(recs) != 1 {
				t.Fatalf("want exit 0 and one record; %s", res)
			}
			if err := h.wait(t, 5*time.Second); !killedBy(err, syscall.SIGKILL) {
				t.Errorf("holder ended with %v, want killed by SIGKILL", err)
			}
			want := fmt.Sprintf("%[1]d SIGTERM still_running; %[1]d SIGKILL exited", h.pid())
			if got := actionsText(recs[0].Actions); got != want || !recs[0].Force || !recs[0].Free {
				t.Errorf("actions %q, want %q, with force and free; %s", got, want, res)
			}
		})
	}
}

// TestFreeJSONRefusesItsParent: the holder is bindwatch's parent (this
// test); the record says it was refused, and why, and that the port is
// still held by it.
func TestFreeJSONRefusesItsParent(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	res, recs := freeRecords(t, fmt.Sprintf("%d/tcp", port), "--kill", "--force", "--grace", "200ms")
	if res.code != 1 || len(recs) != 1 {
		t.Fatalf("want exit 1 (the port stays held) and one record; %s", res)
	}
	rec := recs[0]
	if want := fmt.Sprintf("%d SIGTERM refused", os.Getpid()); actionsText(rec.Actions) != want {
		t.Fatalf("actions %q, want %q; %s", actionsText(rec.Actions), want, res)
	}
	if !strings.Contains(rec.Actions[0].Reason, "bindwatch's parent") || !strings.Contains(rec.Blocked, "will not stop") {
		t.Errorf("the refusal should say why (bindwatch's parent), and the port why it cannot be freed; %s", res)
	}
	if rec.Free || !slices.Equal(holderPIDs(rec.HoldersAfter), []int{os.Getpid()}) || rec.Hint == "" {
		t.Errorf("want still held by pid %d at the end, with a hint; %s", os.Getpid(), res)
	}
}

// TestFreeJSONTimeWait: a port held only by TIME_WAIT has no process to
// stop: no action, and the record explains it.
func TestFreeJSONTimeWait(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.LeaveTimeWait(t, "127.0.0.1", port, true)
	res, recs := freeRecords(t, fmt.Sprintf("%d/tcp", port), "--kill", "--force")
	if res.code != 1 || len(recs) != 1 {
		t.Fatalf("want exit 1 (TIME_WAIT stays) and one record; %s", res)
	}
	rec := recs[0]
	if len(rec.Actions) != 0 || rec.Free {
		t.Errorf("want no action and the port still held; %s", res)
	}
	if rec.TimeWait == nil || rec.TimeWait.Count != 1 || rec.TimeWaitAfter == nil {
		t.Errorf("want one TIME_WAIT socket before and still after; %s", res)
	}
	if rec.Cause != events.CauseTimeWait {
		t.Errorf("cause %q, want %s; %s", rec.Cause, events.CauseTimeWait, res)
	}
	for _, want := range []string{"only TIME_WAIT sockets remain", "which no process holds", "--reuseaddr"} {
		if !strings.Contains(rec.Blocked, want) {
			t.Errorf("blocked lacks %q; %s", want, res)
		}
	}
}

// keeperHolding starts a root daemon that keeps the fd it is handed, has
// uid 65534 listen on port and hand it the socket (SCM_RIGHTS), closing
// its own copy, and returns the daemon, now the socket's only holder.
func keeperHolding(t *testing.T, port int) *holder {
	t.Helper()
	name := fmt.Sprintf("bw-keeper-%d-%d", os.Getpid(), port)
	cmd := testenv.Helper("keeper " + name)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	t.Cleanup(func() { cmd.Process.Kill(); h.wait(t, 5*time.Second) })
	lines := bufio.NewReader(out)
	if l, _ := lines.ReadString('\n'); !strings.HasPrefix(l, "listening ") {
		t.Fatalf("keeper said %q", l)
	}
	sent, err := testenv.HelperAsUser(t, fmt.Sprintf("handover %s tcp 127.0.0.1 %d", name, port), 65534).Output()
	if err != nil {
		t.Fatalf("uid 65534 could not hand its socket over: %v", err)
	}
	l, _ := lines.ReadString('\n')
	if f := strings.Fields(l); len(f) != 3 || f[0] != "ready" || "sent "+f[2] != strings.TrimSpace(string(sent)) {
		t.Fatalf("keeper said %q after uid 65534 said %q", l, sent)
	}
	go func() {
		io.Copy(io.Discard, out)
		h.done <- cmd.Wait()
	}()
	return h
}

// uid 65534 hands its listening socket to a root daemon that keeps the fds
// it receives, and closes its own copy. free --kill refuses to signal the
// daemon — it did not create the socket — naming both the socket's user
// and the daemon; only --force signals it, and says so.
func TestFreeRefusesAHandedOverSocket(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	arg := strconv.Itoa(port) + "/tcp"
	keeper := keeperHolding(t, port)
	pid := keeper.pid()

	res := bindwatch(t, "free", arg, "--kill", "--format", "text")
	for _, want := range []string{
		fmt.Sprintf("belongs to uid 65534 (nobody), but pid %d (", pid),
		") runs as uid 0 (root): it did not create the socket, another user's process handed it over (SCM_RIGHTS)",
		"(--kill --force signals it anyway)",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("free --kill does not say %q: %s", want, res)
		}
	}
	if res.code != 1 || !keeper.running() {
		t.Fatalf("free --kill signalled the root daemon holding uid 65534's socket (exit %d, running %v): %s", res.code, keeper.running(), res)
	}
	res, recs := freeRecords(t, arg, "--kill")
	if len(recs) != 1 || len(recs[0].Actions) != 1 || recs[0].Actions[0].Result != events.ResultRefused ||
		recs[0].Actions[0].PID != pid || !strings.Contains(recs[0].Actions[0].Reason, "belongs to uid 65534 (nobody)") || !keeper.running() {
		t.Fatalf("free --kill --format json: %s; want pid %d refused, saying why", res, pid)
	}

	res = bindwatch(t, "free", arg, "--kill", "--force", "--format", "text")
	if res.code != 0 || !strings.Contains(res.stdout, fmt.Sprintf("--force: signalling pid %d (", pid)) || !strings.Contains(res.stdout, "although the socket") {
		t.Errorf("free --kill --force: %s; want the daemon signalled, and said so", res)
	}
	if err := keeper.wait(t, 5*time.Second); !killedBy(err, syscall.SIGTERM) {
		t.Errorf("keeper: %v, want killed by SIGTERM", err)
	}
}
