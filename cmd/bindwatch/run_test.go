package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// serverPy binds and listens on 0.0.0.0:PORT, writes its pid to PIDFILE
// and serves until killed; if the port is taken it exits 1.
const serverPy = `import os, socket, sys, time
s = socket.socket()
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError as e:
    print("server:", e, file=sys.stderr)
    sys.exit(1)
s.listen()
open(sys.argv[2], "w").write(str(os.getpid()))
time.sleep(60)`

// bindPy binds 0.0.0.0:PORT once and says how it went; it exits 0 even
// when the bind fails.
const bindPy = `import socket, sys
try:
    socket.socket().bind(("0.0.0.0", int(sys.argv[1])))
    print("bound")
except OSError as e:
    print("bind failed:", e)`

// records reads the JSON lines of an --output file.
func records(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20) // a record with a 100 KB command line is one line
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: not JSON: %v: %s", path, err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// failuresIn decodes the bind_failure records of an --output file.
func failuresIn(t *testing.T, path string) []events.Failure {
	t.Helper()
	var out []events.Failure
	for _, r := range records(t, path) {
		if r["type"] != events.TypeFailure {
			continue
		}
		b, _ := json.Marshal(r)
		var f events.Failure
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// writeScript writes a shell script into a fresh directory and returns its
// path and the directory.
func writeScript(t *testing.T, body string) (script, dir string) {
	t.Helper()
	dir = t.TempDir()
	script = filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte("set -u\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, dir
}

// TestRunReportsConflictWithHolder runs a script that starts two servers
// on one port: the second one's failure is reported as it happens with
// the first as holder, the summary names the port, and bindwatch exits
// with the script's status.
func TestRunReportsConflictWithHolder(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	script, dir := writeScript(t, fmt.Sprintf(`
python3 -c '%[1]s' %[2]d first.pid &
while [ ! -s first.pid ]; do sleep 0.02; done
python3 -c '%[1]s' %[2]d second.pid 2>/dev/null && exit 99
# Keep the first server until bindwatch has reported the failure: then
# it was resolved while its holder, the sibling, was still there.
i=0; while ! grep -q bind_failure out.jsonl && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done
kill $(cat first.pid)
exit 7
`, serverPy, port))
	out := filepath.Join(dir, "out.jsonl")
	cmd := exec.Command(bindwatchBin, "run", "--backend", testenv.Backend(), "--output", out, "--", "sh", script)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Fatalf("exit %d (%v), want the script's 7\n%s", code, err, stderr.String())
	}
	holderPID := readPID(t, filepath.Join(dir, "first.pid"))
	fs := failuresIn(t, out)
	if len(fs) != 1 {
		t.Fatalf("want 1 failure, got %d:\n%s", len(fs), stderr.String())
	}
	f := fs[0]
	if f.Errno != "EADDRINUSE" || f.Syscall != "bind" || int(f.Port) != port || f.Process.Comm != "python3" {
		t.Errorf("failure %+v: want python3's EADDRINUSE bind on %d", f, port)
	}
	if len(f.Holders) == 0 || len(f.Holders[0].Processes) == 0 || f.Holders[0].Processes[0].PID != holderPID {
		t.Errorf("holders %+v: want the first server, pid %d", f.Holders, holderPID)
	}
	// Two siblings of one job: both are named, and so is the command.
	if f.Cause != events.CauseSameJob {
		t.Errorf("cause %q, want %q: %s", f.Cause, events.CauseSameJob, f.Diagnosis)
	}
	for _, want := range []string{"started by the same command", fmt.Sprintf("python3 (pid %d) and python3 (pid %d) both run under `sh /", f.Process.PID, holderPID)} {
		if !strings.Contains(f.Diagnosis, want) {
			t.Errorf("diagnosis %q\n lacks %q", f.Diagnosis, want)
		}
	}
	summary := stderr.String()
	for _, want := range []string{"1 bind()/listen() call failed in the process tree of `sh /", "exit status 7",
		fmt.Sprintf("%d/tcp", port), "1× EADDRINUSE", fmt.Sprintf("held by pid %d (", holderPID),
		// The incident summary, as bindwatch report writes it.
		fmt.Sprintf("incident on tcp 0.0.0.0:%d", port), "1 failed attempt", fmt.Sprintf("holder:  pid %d (", holderPID)} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	rs := records(t, out)
	if rs[0]["type"] != events.TypeStart || rs[len(rs)-1]["type"] != events.TypeStop {
		t.Errorf("JSON output should run from a start to a stop record: %v", rs)
	}
}

// TestRunTextOnStandardError: by default the failure is a readable line on
// standard error, with why and fix, and the command's own output passes
// through untouched.
func TestRunTextOnStandardError(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	res := bindwatch(t, "run", "--backend", testenv.Backend(), "--", "python3", "-c", bindPy, strconv.Itoa(port))
	if res.code != 0 {
		t.Fatalf("want python3's exit 0; %s", res)
	}
	if !strings.HasPrefix(res.stdout, "bind failed: [Errno 98]") {
		t.Errorf("the command's stdout should pass through; %s", res)
	}
	for _, want := range []string{fmt.Sprintf("EADDRINUSE bind tcp 0.0.0.0:%d", port), fmt.Sprintf("held by pid %d", os.Getpid()), "why: ", "fix: ",
		"1 bind()/listen() call failed"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q; %s", want, res)
		}
	}
	if strings.Contains(res.stderr, "tracing failed bind()/listen() with") || strings.Contains(res.stderr, "bindwatch stopped after") {
		t.Errorf("text on stderr should be the failures and the summary, not start/stop lines; %s", res)
	}
}

// TestRunTracesDoubleForkedDaemon: a process that double-forks (its
// parent exits, it is reparented) and binds a busy port afterwards is
// still in the traced tree.
func TestRunTracesDoubleForkedDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	// sh -c is the middle process: it starts the daemon (a subshell) in
	// the background and exits before the daemon binds.
	script, dir := writeScript(t, fmt.Sprintf(`
sh -c '( while [ ! -e go ]; do sleep 0.02; done
  python3 parent.py > daemon.parent
  python3 bind.py %d > daemon.out
  touch done ) & echo $$ > middle.pid'
touch go
while [ ! -e done ]; do sleep 0.02; done
`, port))
	// parent.py prints the parent pid of its own parent (the daemon).
	os.WriteFile(filepath.Join(dir, "parent.py"), []byte(`import os
print(open("/proc/%d/stat" % os.getppid()).read().rsplit(")", 1)[1].split()[1])`), 0o644)
	os.WriteFile(filepath.Join(dir, "bind.py"), []byte(bindPy), 0o644)
	out := filepath.Join(dir, "out.jsonl")
	cmd := exec.Command(bindwatchBin, "run", "--backend", testenv.Backend(), "--output", out, "--", "sh", script)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bindwatch run: %v\n%s", err, stderr.String())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "daemon.out")); !strings.HasPrefix(string(b), "bind failed") {
		t.Fatalf("the daemon's bind should have failed: %q", b)
	}
	middle := readPID(t, filepath.Join(dir, "middle.pid"))
	if ppid := readPID(t, filepath.Join(dir, "daemon.parent")); ppid == middle {
		t.Fatalf("the daemon's parent is still the middle shell %d: not a double fork", middle)
	}
	fs := failuresIn(t, out)
	if len(fs) != 1 || int(fs[0].Port) != port || fs[0].Process.Comm != "python3" {
		t.Fatalf("want the daemon's failure on port %d, got %+v\n%s", port, fs, stderr.String())
	}
	if len(fs[0].Holders) == 0 || len(fs[0].Holders[0].Processes) == 0 || fs[0].Holders[0].Processes[0].PID != os.Getpid() {
		t.Errorf("holders %+v: want this test, pid %d", fs[0].Holders, os.Getpid())
	}
}

// TestRunTracesOnlyItsTree: a failure outside the command's process tree,
// at the same time, is not reported — and, in the same run, the tree's own
// failure after it is (so broken tracing cannot pass). The command waits
// for a file the test creates once its own failure is done.
func TestRunTracesOnlyItsTree(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	ready := filepath.Join(dir, "ready")
	goFile := filepath.Join(dir, "go")
	// The tree's failure: a helper process binding the held port (its exit
	// status is the errno).
	helper := testenv.Helper("bind tcp 0.0.0.0 " + strconv.Itoa(port))
	args := []string{"run", "--backend", testenv.Backend(), "--output", out, "--ready-file", ready, "--",
		"sh", "-c", `while [ ! -e "$0" ]; do sleep 0.01; done; exec "$@"`, goFile}
	cmd := exec.Command(bindwatchBin, append(args, helper.Args...)...)
	cmd.Env = helper.Env
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	testenv.FailBind(t, "tcp", "0.0.0.0", port, testenv.Opts{}, syscall.EADDRINUSE) // this test is not in the tree
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != int(syscall.EADDRINUSE) {
		t.Fatalf("exit %d, want the helper's %d (EADDRINUSE)\n%s", code, syscall.EADDRINUSE, stderr.String())
	}
	fs := failuresIn(t, out)
	if len(fs) != 1 || fs[0].Process.PID == os.Getpid() || int(fs[0].Port) != port {
		t.Fatalf("want exactly the tree's failure on port %d (not this test's, pid %d); got %+v", port, os.Getpid(), fs)
	}
	// The holder, this test, is not in the tree: no sibling of the job.
	if fs[0].Cause == events.CauseSameJob {
		t.Errorf("a holder outside the traced tree named a sibling: %s", fs[0].Diagnosis)
	}
}

func TestRunFailOnConflict(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
	p := strconv.Itoa(port)
	backend := "--backend=" + testenv.Backend()
	for _, c := range []struct {
		name string
		args []string
		want int
	}{
		{"conflict, command succeeds", []string{"run", backend, "--fail-on-conflict", "--", "python3", "-c", bindPy, p}, exitConflict},
		{"conflict, without the flag", []string{"run", backend, "--", "python3", "-c", bindPy, p}, 0},
		{"conflict, command fails: its status wins", []string{"run", backend, "--fail-on-conflict", "--", "sh", "-c", `python3 -c "$0" "$1"; exit 5`, bindPy, p}, 5},
		{"no conflict", []string{"run", backend, "--fail-on-conflict", "--", "true"}, 0},
		{"conflict filtered out by --errno", []string{"run", backend, "--fail-on-conflict", "--errno", "EACCES", "--", "python3", "-c", bindPy, p}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := bindwatch(t, c.args...)
			if res.code != c.want {
				t.Errorf("want exit %d; %s", c.want, res)
			}
			if c.want == exitConflict && !strings.Contains(res.stderr, "--fail-on-conflict: python3 succeeded, but 1 bind()/listen() call failed") {
				t.Errorf("the exit should be explained; %s", res)
			}
		})
	}
}

func TestRunExitStatus(t *testing.T) {
	testenv.RequireRoot(t)
	backend := "--backend=" + testenv.Backend()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	for _, c := range []struct {
		name string
		argv []string
		want int
		says string
	}{
		{"exit status", []string{"sh", "-c", "exit 7"}, 7, "exit status 7"},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 128 + 15, "killed by SIGTERM"},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9, "killed by SIGKILL"},
		{"not found", []string{"no-such-command-bindwatch"}, 127, "executable file not found"},
		{"not executable", []string{notExec}, 126, "permission denied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := bindwatch(t, append([]string{"run", backend, "--"}, c.argv...)...)
			if res.code != c.want || !strings.Contains(res.stderr, c.says) {
				t.Errorf("want exit %d saying %q; %s", c.want, c.says, res)
			}
		})
	}
}

// TestRunForwardsSIGTERM: SIGTERM sent to bindwatch reaches the command,
// whose handler decides the exit status.
func TestRunForwardsSIGTERM(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	trapped := filepath.Join(dir, "trapped")
	cmd := exec.Command(bindwatchBin, "run", "--backend", testenv.Backend(), "--", "sh", "-c",
		`trap 'exit 42' TERM; touch "$0"; while :; do sleep 0.05; done`, trapped)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitForReady(t, trapped, cmd.Process, stderr.String)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("bindwatch still running 10s after SIGTERM\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 42 {
		t.Errorf("exit %d, want 42 from the command's TERM trap\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "exit status 42") {
		t.Errorf("the summary should give the command's status:\n%s", stderr.String())
	}
}

// TestRunArguments: flags go before --; everything after it is the
// command's, untouched, flags included.
func TestRunArguments(t *testing.T) {
	testenv.RequireRoot(t)
	res := bindwatch(t, "run", "--backend", testenv.Backend(), "--fold", "0", "--", "sh", "-c", `printf '%s|' "$@"`, "sh", "--fail-on-conflict", "--port", "1", "--")
	if res.code != 0 || res.stdout != "--fail-on-conflict|--port|1|--|" {
		t.Errorf("the command's arguments should pass untouched; %s", res)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "run needs a command"},
		{[]string{"run", "ls", "-l"}, "put the command after --"},
		{[]string{"run", "--pid", "1", "--", "true"}, "--pid is a flag of `bindwatch`, not of `bindwatch run`"},
		{[]string{"run", "--unit", "nginx", "--", "true"}, "--unit is a flag of `bindwatch`, not of `bindwatch run`"},
		{[]string{"run", "--port", "http", "--", "true"}, "--port http"},
		{[]string{"run", "--format", "yaml", "--", "true"}, `--format "yaml"`},
	} {
		res := bindwatch(t, c.args...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("bindwatch %q: want exit 2 saying %q; %s", c.args, c.want, res)
		}
		checkUsageError(t, c.args, res.stderr)
	}
	if res := bindwatch(t, "run", "--help"); res.code != 0 || !strings.Contains(res.stdout, "Examples:") || !strings.Contains(res.stdout, "Exit status") {
		t.Errorf("run --help: want examples and exit statuses; %s", res)
	}
}

// TestRunKeyboardInterruptReachesCommandOnce: Ctrl-C on bindwatch's
// terminal already interrupts the whole foreground process group, the
// command included; bindwatch must not send it a second SIGINT.
func TestRunKeyboardInterruptReachesCommandOnce(t *testing.T) {
	testenv.RequireRoot(t)
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	got, ready := filepath.Join(dir, "signals"), filepath.Join(dir, "ready")
	cmd := exec.Command(bindwatchBin, "run", "--backend", testenv.Backend(), "--", "python3", "-c", signalsPy, got, ready)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	// A session of its own with the pseudo-terminal as controlling
	// terminal: bindwatch and the command are its foreground group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	defer cmd.Process.Kill()
	screen := &testenv.SyncBuffer{}
	go io.Copy(screen, ptmx)
	testenv.WaitForReady(t, ready, cmd.Process, screen.String)
	ptmx.Write([]byte{3}) // Ctrl-C
	// The terminal signals its whole foreground group at once: once the
	// command has logged its SIGINT, bindwatch has its own pending too. A
	// SIGINT bindwatch wrongly forwarded would then reach the command
	// before the SIGTERM below: bindwatch handles its signals in order,
	// and SIGINT (2) is delivered before SIGTERM (15).
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(got); strings.Contains(string(b), "SIGINT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command logged no SIGINT within 3m of Ctrl-C; screen:\n%s", screen.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM) // not from the terminal: forwarded
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("bindwatch still running 10s after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 42 {
		t.Errorf("exit %d, want 42 (the command's answer to the forwarded SIGTERM)", code)
	}
	b, _ := os.ReadFile(got)
	want := fmt.Sprintf("SIGINT from pid 0\nSIGTERM from pid %d\n", cmd.Process.Pid)
	if string(b) != want {
		t.Errorf("the command received:\n%s\nwant one SIGINT from the terminal (pid 0) and the SIGTERM from bindwatch:\n%s", b, want)
	}
}

// signalsPy logs each SIGINT and SIGTERM with its sender's pid (0 for the
// kernel, as for a terminal's Ctrl-C) to FILE, after creating READY; it
// exits 42 on SIGTERM.
const signalsPy = `import signal, sys
want = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, want)
open(sys.argv[2], "w").close()
while True:
    info = signal.sigwaitinfo(want)
    with open(sys.argv[1], "a") as f:
        f.write("%s from pid %d\n" % (signal.Signals(info.si_signo).name, info.si_pid))
    if info.si_signo == signal.SIGTERM:
        sys.exit(42)`
