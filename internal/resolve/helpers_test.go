package resolve

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// helperEnv carries a job to the test binary re-executed as a helper
// process (see runHelperJob), so that holders are real processes even on a
// machine without python, socat or nginx.
const helperEnv = "BINDWATCH_RESOLVE_HELPER"

func TestMain(m *testing.M) {
	if job := os.Getenv(helperEnv); job != "" {
		if err := runHelperJob(strings.Fields(job)); err != nil {
			fmt.Fprintln(os.Stderr, "resolve helper:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	testenv.RunHelperIfAsked()
	code := m.Run()
	stopBenchFleet()
	os.Exit(code)
}

// runHelperJob runs in the helper process. Jobs, each printing one line
// when done and then waiting for stdin to close:
//
//	hold PROTO ADDR PORT [reuseaddr] [reuseport] [v6only|dualstack] [nolisten]
//	   → "ready PID INODE"
//	inherit ADDR PORT: listen on tcp ADDR:PORT, start a child ("keep")
//	   that inherits the socket as fd 3, and exit at once → the child
//	   prints "ready PID INODE"
//	keep → "ready PID INODE" of fd 3
//	fdhog N: open N file descriptors (sockets and pipes) → "ready PID"
//	trybind PROTO ADDR PORT [reuseaddr] → "errno N PID" (0: bound)
func runHelperJob(args []string) error {
	wait := func() { io.Copy(io.Discard, os.Stdin) }
	switch args[0] {
	case "hold":
		fd, err := helperSocket(args[1:])
		if err != nil {
			return err
		}
		fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
		wait()
		return nil
	case "inherit":
		fd, err := helperSocket([]string{"tcp", args[1], args[2]})
		if err != nil {
			return err
		}
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), helperEnv+"=keep")
		child.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "listener")}
		child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
		return child.Start() // and exit: the child is orphaned
	case "keep":
		fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(3))
		wait()
		return nil
	case "fdhog":
		n, _ := strconv.Atoi(args[1])
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n+64) {
			lim.Cur = min(lim.Max, uint64(n+64))
			unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
		}
		for opened := 0; opened < n; {
			switch opened % 3 {
			case 0:
				if _, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err != nil {
					return err
				}
				opened++
			case 1:
				if _, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0); err != nil {
					return err
				}
				opened++
			default:
				var p [2]int
				if err := unix.Pipe(p[:]); err != nil {
					return err
				}
				opened += 2
			}
		}
		fmt.Printf("ready %d\n", os.Getpid())
		wait()
		return nil
	case "trybind":
		fd, err := testenv.Socket(args[1], args[2], testenv.Opts{ReuseAddr: len(args) > 4 && args[4] == "reuseaddr"})
		if err != nil {
			return err
		}
		port, _ := strconv.Atoi(args[3])
		errno := 0
		if err := testenv.Bind(fd, args[2], port); err != nil {
			errno = int(err.(syscall.Errno))
		}
		fmt.Printf("errno %d %d\n", errno, os.Getpid())
		wait()
		return nil
	}
	return fmt.Errorf("unknown job %q", args)
}

// helperSocket makes the socket of a hold job: PROTO ADDR PORT [options].
func helperSocket(args []string) (int, error) {
	if len(args) < 3 {
		return -1, fmt.Errorf("want PROTO ADDR PORT, got %q", args)
	}
	var opts testenv.Opts
	listen := args[0] == "tcp"
	for _, o := range args[3:] {
		switch o {
		case "reuseaddr":
			opts.ReuseAddr = true
		case "reuseport":
			opts.ReusePort = true
		case "v6only":
			opts.V6Only = boolPtr(true)
		case "dualstack":
			opts.V6Only = boolPtr(false)
		case "nolisten":
			listen = false
		}
	}
	fd, err := testenv.Socket(args[0], args[1], opts)
	if err != nil {
		return -1, err
	}
	// The socket must survive exec into an inheriting child.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return -1, err
	}
	port, _ := strconv.Atoi(args[2])
	if err := testenv.Bind(fd, args[1], port); err != nil {
		return -1, fmt.Errorf("bind %s %s:%d: %w", args[0], args[1], port, err)
	}
	if listen {
		if err := unix.Listen(fd, 64); err != nil {
			return -1, err
		}
	}
	return fd, nil
}

func socketInode(fd int) uint64 {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0
	}
	return st.Ino
}

// helperProc is a running helper process.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	pid   int    // from its ready line (the child's, for inherit)
	inode uint64 // its socket's inode, for hold/keep
	line  []string
}

// startHelper runs job in a re-executed test binary, waits for its first
// line, and stops it when the test ends. prefix (nil for none) wraps the
// command, e.g. {"ip", "netns", "exec", NAME}.
func startHelper(t testing.TB, prefix []string, job string) *helperProc {
	t.Helper()
	argv := append(append([]string{}, prefix...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+job)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// An explicit pipe, not cmd.StdoutPipe: an orphaned child keeps the
	// write end, and Wait must not wait for it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %q: %v", job, err)
	}
	w.Close()
	h := &helperProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(r)}
	t.Cleanup(func() {
		h.stdin.Close()
		r.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lineCh := make(chan string, 1)
	go func() {
		l, _ := h.out.ReadString('\n')
		lineCh <- l
	}()
	select {
	case l := <-lineCh:
		h.line = strings.Fields(l)
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %q did not start", job)
	}
	if len(h.line) < 2 {
		t.Fatalf("helper %q failed (said %q)", job, h.line)
	}
	if h.line[0] == "ready" {
		h.pid, _ = strconv.Atoi(h.line[1])
		if len(h.line) > 2 {
			h.inode, _ = strconv.ParseUint(h.line[2], 10, 64)
		}
	}
	return h
}

// stop ends the helper and waits until it is gone.
func (h *helperProc) stop() {
	h.stdin.Close()
	h.cmd.Wait()
}

// startProgram runs a real server program, skipping the subtest when it is
// not installed (.ci/run installs python3, socat and nginx, so CI runs them).
func startProgram(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed", name)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd
}

// waitHeld polls until proto/port has a socket in state in the resolver's
// own namespace, as a just-started server binds after a moment.
func waitHeld(t *testing.T, r *Resolver, proto string, port uint16, state string) *PortReport {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err := r.Who(r.OwnNetns(), proto, port)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range rep.Holders {
			if h.State == state && len(h.Processes) > 0 {
				return rep
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d/%s never reached %s: %+v", port, proto, state, rep.Holders)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newTestResolver(t testing.TB, opts Options) *Resolver {
	t.Helper()
	testenv.RequireRoot(t)
	if opts.CacheTTL == 0 {
		opts.CacheTTL = -1 // tests change sockets between lookups
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if method, why := r.OwnerLookup(); !opts.NoBPF && method != OwnersBPFIter {
		if os.Getenv("BINDWATCH_REQUIRE_BPF") == "1" {
			t.Fatalf("BPF iterator unavailable: %v", why)
		}
		t.Logf("BPF iterator unavailable, using %s: %v", method, why)
	}
	return r
}
