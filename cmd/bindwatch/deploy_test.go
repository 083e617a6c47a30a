package main

// Helpers for the tests of bindwatch run, wait-free and free, which drive
// the real binary (bindwatchBin, built by TestMain) as a user would.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// result is how a bindwatch run ended.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// bindwatch runs the real binary with args as a user would, and returns
// what it printed and its exit status. It fails the test after a minute.
func bindwatch(t *testing.T, args ...string) result {
	t.Helper()
	return runBindwatch(t, exec.Command(bindwatchBin, args...))
}

// runBindwatch runs cmd (bindwatch, or a command that runs it) as
// bindwatch does, calling each of started, with what it has written so
// far, once it has started.
func runBindwatch(t *testing.T, cmd *exec.Cmd, started ...func(stdout, stderr *testenv.SyncBuffer)) result {
	t.Helper()
	var stdout, stderr testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		defer timer.Stop()
		for _, f := range started {
			f(&stdout, &stderr)
		}
		err = cmd.Wait()
	}
	res := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && res.took < time.Minute:
		res.code = exit.ExitCode()
	default:
		t.Fatalf("%q: %v\n%s", cmd.Args, err, res)
	}
	return res
}

// releaseWhenSaid is a started function for runBindwatch: once what the
// command wrote (to stdout if json, else stderr) contains said, it closes
// h's stdin (a helper then lets go of its port and exits), and stores when
// into *at. It fails the test if the command exits or 30 s pass first.
func releaseWhenSaid(t *testing.T, cmd *exec.Cmd, h *holder, json bool, said string, at *time.Time) func(stdout, stderr *testenv.SyncBuffer) {
	return func(stdout, stderr *testenv.SyncBuffer) {
		out := stderr
		if json {
			out = stdout
		}
		for deadline := time.Now().Add(testenv.StartTimeout); !strings.Contains(out.String(), said); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) || cmd.ProcessState != nil {
				t.Errorf("%q did not say %q before the holder let go; stdout:\n%s\nstderr:\n%s", cmd.Args, said, stdout, stderr)
				break
			}
		}
		*at = time.Now()
		h.stdin.Close()
	}
}

// holder is a process holding a port for a test.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// startPython runs `python3 -c code ARGS...`, which must print "ready"
// once it holds its port, and waits for that. It is killed at the end of
// the test.
func startPython(t *testing.T, code string, args ...string) *holder {
	t.Helper()
	testenv.Require(t, "python3", "a real server holding the port")
	return startHolder(t, exec.Command("python3", append([]string{"-c", code}, args...)...))
}

// startHelper runs a testenv helper job such as "hold tcp 0.0.0.0 PORT",
// which holds its port until its standard input is closed.
func startHelper(t *testing.T, job string) *holder {
	t.Helper()
	return startHolder(t, testenv.Helper(job))
}

func startHolder(t *testing.T, cmd *exec.Cmd) *holder {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		h.wait(t, 5*time.Second)
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
		h.done <- cmd.Wait()
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "ready") {
			t.Fatalf("holder %q did not get ready: %q\n%s", cmd.Args, line, stderr.String())
		}
	case <-time.After(testenv.StartTimeout):
		t.Fatalf("holder %q not ready after %v\n%s", cmd.Args, testenv.StartTimeout, stderr.String())
	}
	return h
}

// wait waits for the holder to exit and returns how: nil, or an
// *exec.ExitError. It fails the test if it is still running after d.
func (h *holder) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // later calls get it too
		return err
	case <-time.After(d):
		t.Fatalf("holder pid %d still running after %s", h.cmd.Process.Pid, d)
		return nil
	}
}

// running reports whether the holder has not exited.
func (h *holder) running() bool {
	select {
	case err := <-h.done:
		h.done <- err
		return false
	default:
		return true
	}
}

func (h *holder) pid() int { return h.cmd.Process.Pid }

// holdTCP is a python3 program that listens on 0.0.0.0:PORT, says
// "ready" and waits to be killed.
const holdTCP = `import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(120)`

// lastStop returns the stop record of an --output file.
func lastStop(t *testing.T, path string) events.Stop {
	t.Helper()
	rs := records(t, path)
	if len(rs) == 0 || rs[len(rs)-1]["type"] != events.TypeStop {
		t.Fatalf("%s does not end with a stop record: %v", path, rs)
	}
	b, _ := json.Marshal(rs[len(rs)-1])
	var s events.Stop
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: stop record does not decode: %v", path, err)
	}
	return s
}
