package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// waitCreated returns as soon as name is created in dir by p (inotify: no
// polling delay), so a test can act at the very moment it appears. It
// fails the test once p has exited without creating it, or after
// testenv.StartTimeout: a start under load may take far longer than idle.
func waitCreated(t *testing.T, dir, name string, p *os.Process, context func() string) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(testenv.StartTimeout); ; {
		if _, err := os.Lstat(path); err == nil {
			return
		}
		if testenv.Exited(p.Pid) {
			if _, err := os.Lstat(path); err == nil {
				return
			}
			t.Fatalf("pid %d exited without creating %s\n%s", p.Pid, path, context())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v\n%s", path, testenv.StartTimeout, context())
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		unix.Poll(fds, 100)
		unix.Read(fd, buf) // drain; the Lstat above decides
	}
}

// SIGTERM with a 16 MiB backlog in the ring buffer (issue 8: it took 20 s,
// and a supervisor's SIGKILL then lost the stop record): bindwatch exits
// within a second, and the stop record counts what it had no time to
// report as unread — still adding up to every failure provoked.
func TestSIGTERMWithBacklog(t *testing.T) {
	// ~30,000 records fill 16 MiB; resolving each takes milliseconds.
	const provoked = 40000
	cmd, stderr, ready, out := tracerWithBacklog(t, provoked)
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	took := time.Since(sent)
	if err != nil {
		t.Fatalf("bindwatch exited with %v after SIGTERM: %s", err, stderr.String())
	}
	// The stop itself takes ~0.6 s; a loaded 2-core machine may add to it,
	// but not the 20 s a drained backlog took.
	if took > 1500*time.Millisecond {
		t.Errorf("bindwatch took %v to exit after SIGTERM with a 16 MiB backlog, want about a second", took)
	}
	stop := lastStop(t, out)
	t.Logf("exited %v after SIGTERM; stop %+v", took, stop)
	if stop.Unread == 0 {
		t.Errorf("nothing unread: there was no backlog for this test to mean anything (%+v)", stop)
	}
	if stop.Failures != provoked || stop.Reported+stop.Folded+stop.Lost+stop.Unread != provoked {
		t.Errorf("stop %+v: want failures %d = reported + folded + lost + unread", stop, provoked)
	}
	if _, err := os.Stat(ready); err == nil {
		t.Errorf("ready file %s left behind after exit", ready)
	}
}

// A second SIGINT stops at once — nothing more is reported — and the stop
// record is still written.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	cmd, stderr, _, out := tracerWithBacklog(t, 20000)
	cmd.Process.Signal(syscall.SIGINT)
	// The second signal once the first is handled: two SIGINTs close
	// together merge into one (a standard signal is pending or not).
	for deadline := time.Now().Add(testenv.StartTimeout); !strings.Contains(stderr.String(), "a second Ctrl-C or SIGTERM stops at once"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no word of stopping on standard error: %s", stderr.String())
		}
	}
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bindwatch exited with %v after two SIGINTs: %s", err, stderr.String())
	}
	took := time.Since(sent)
	stop := lastStop(t, out)
	// When the stop record was written says whether reporting stopped at
	// once: without the second signal it would have gone on for the stop's
	// whole 0.5 s. (Exiting then waits for the kernel to detach the
	// programs: 0.1-0.8 s on this loaded 2-core host.)
	written := stop.Time.Sub(sent)
	t.Logf("stop record written %v, exited %v after the second SIGINT", written, took)
	if written > 300*time.Millisecond {
		t.Errorf("stop record written %v after a second SIGINT, want at once", written)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("bindwatch took %v to exit after a second SIGINT", took)
	}
	if stop.Unread == 0 || stop.Failures != 20000 {
		t.Errorf("stop %+v: want 20000 failures, some unread", stop)
	}
}

// SIGTERM the moment the ready file appears (issue 8: 39 of 40 runs died
// without a stop record, the handler not yet installed): a stop record
// every time, 50 times.
func TestSIGTERMAtReady(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	for i := range 50 {
		dir := t.TempDir()
		ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out.jsonl")
		cmd := exec.Command(bindwatchBin, "--backend", testenv.Backend(), "--port", strconv.Itoa(port),
			"--ready-file", ready, "--output", out)
		var stderr testenv.SyncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitCreated(t, dir, "ready", cmd.Process, stderr.String)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run %d: bindwatch exited with %v on SIGTERM at its ready file: %s", i, err, stderr.String())
		}
		lastStop(t, out)
	}
}

// A symlink planted where --ready-file will be, in a sticky world-writable
// directory like /tmp (fs.protected_symlinks=0 on this host, so the kernel
// itself would follow it): bindwatch refuses with a clear error and the
// symlink's target is untouched.
func TestReadyFilePlantedSymlink(t *testing.T) {
	testenv.RequireRoot(t)
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o1777); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("root's data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(shared, "bindwatch.ready")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil { // planted by nobody
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	res := bindwatch(t, "--backend", testenv.Backend(), "--port", strconv.Itoa(port), "--ready-file", link, "--format", "json")
	if res.code == 0 || !strings.Contains(res.stderr, link) || !strings.Contains(res.stderr, "symlink") {
		t.Errorf("planted --ready-file symlink: want a failure naming the file and saying why; %v", res)
	}
	if b, _ := os.ReadFile(target); string(b) != "root's data\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	if strings.Contains(res.stdout, `"type":"start"`) {
		t.Errorf("tracing started although the ready file could not be made: %s", res.stdout)
	}
}

// bindwatch run catches signals before its ready file too: SIGTERM at that
// moment reaches the command, and the session still ends in a stop record.
func TestRunSIGTERMAtReady(t *testing.T) {
	testenv.RequireRoot(t)
	for i := range 10 {
		dir := t.TempDir()
		ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out.jsonl")
		cmd := exec.Command(bindwatchBin, "run", "--backend", testenv.Backend(), "--ready-file", ready, "--output", out, "--", "sleep", "30")
		var stderr testenv.SyncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitCreated(t, dir, "ready", cmd.Process, stderr.String)
		cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
			t.Fatalf("run %d: bindwatch run exited %d (%v) on SIGTERM at its ready file, want %d (sleep killed by SIGTERM): %s",
				i, code, err, 128+int(syscall.SIGTERM), stderr.String())
		}
		lastStop(t, out)
	}
}

// tracerWithBacklog starts the real tracer with a 16 MiB ring buffer on a
// port of its own, waits for its ready file, and makes n failures on that
// port (a held UDP port, folding off): a backlog it is still reading when
// this returns. The process is killed at the test's end if still running.
func tracerWithBacklog(t *testing.T, n int) (cmd *exec.Cmd, stderr *testenv.SyncBuffer, ready, out string) {
	t.Helper()
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	dir := t.TempDir()
	ready, out = filepath.Join(dir, "ready"), filepath.Join(dir, "out.jsonl")
	cmd = exec.Command(bindwatchBin, "--backend", testenv.Backend(), "--port", strconv.Itoa(port), "--fold", "0",
		"--ring-size", strconv.Itoa(16<<20), "--ready-file", ready, "--output", out)
	stderr = &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	if err := testenv.Helper("storm udp 127.0.0.1 " + strconv.Itoa(port) + " " + strconv.Itoa(n)).Run(); err != nil {
		t.Fatalf("storm helper: %v", err)
	}
	return cmd, stderr, ready, out
}
