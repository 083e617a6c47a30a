package testenv

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Helper processes are the test binary re-executed to do one job, so every
// holder, failing process or crowd of fds in a test is a real process —
// also on a bare VM without python, socat or nginx.

// helperEnv carries a helper's job from the test to the re-executed binary.
const helperEnv = "BINDWATCH_TEST_HELPER"

// A helper's main goroutine stays on the process's main thread, so that a
// job's per-thread state (the comm "named" sets) is the process's own.
func init() {
	if os.Getenv(helperEnv) != "" {
		runtime.LockOSThread()
	}
}

// RunHelperIfAsked must be called first in TestMain: in a helper process
// it does the helper's job and exits.
func RunHelperIfAsked() {
	job := os.Getenv(helperEnv)
	if job == "" {
		return
	}
	if err := runJob(strings.Fields(job)); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// Helper returns a command re-executing the test binary as a helper that
// does job (see runJob).
//
// A helper runs from a hard link of the test binary (HelperBinary), so that
// it is another program than the test process itself, as the processes a
// user's test would start are: the diagnosis tells programs apart by their
// executable, and a holder that ran the test binary would be "a second
// copy of the same program" to every failure the test provokes itself.
// SameProgramHelper runs the test binary itself.
func Helper(job string) *exec.Cmd {
	cmd := exec.Command(HelperBinary(), "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+job)
	cmd.Stderr = os.Stderr
	return cmd
}

// SameProgramHelper is Helper running the test binary itself: the same
// program as the test process, as a second copy of a service is.
func SameProgramHelper(job string) *exec.Cmd {
	cmd := Helper(job)
	cmd.Path, cmd.Args[0] = os.Args[0], os.Args[0]
	return cmd
}

var (
	helperOnce sync.Once
	helperPath string
)

// HelperBinary is a hard link of the test binary in a directory "helper"
// beside it, in go test's own build directory (removed with it), or the
// test binary itself where no link can be made there.
func HelperBinary() string {
	helperOnce.Do(func() {
		helperPath = os.Args[0]
		dir := filepath.Join(filepath.Dir(os.Args[0]), "helper")
		if filepath.Base(filepath.Dir(os.Args[0])) == "helper" {
			return // a helper starting helpers: the same program as itself
		}
		// The same name in a directory of its own: the same comm.
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return
		}
		link := filepath.Join(dir, filepath.Base(os.Args[0]))
		if err := os.Link(os.Args[0], link); err == nil || errors.Is(err, os.ErrExist) {
			helperPath = link
		}
	})
	return helperPath
}

// HelperAsUser is Helper run as an unprivileged uid (and gid of the same
// number). The test binary is copied where that user can execute it: go
// test builds it in a directory only root may enter.
func HelperAsUser(t testing.TB, job string, uid uint32) *exec.Cmd {
	t.Helper()
	dir, err := os.MkdirTemp("", "bindwatch-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "helper")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+job)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	return cmd
}

// StartHelperAsUser is StartHelper for HelperAsUser: a helper of another
// user, whose /proc entries root without CAP_SYS_PTRACE cannot all read.
func StartHelperAsUser(t testing.TB, job string, uid uint32) *HelperProc {
	t.Helper()
	h, err := spawn(HelperAsUser(t, job, uid), job)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// StartHelperAsUserIn is StartHelperAsUser in the network namespace name
// (from NewNetns): nsenter joins it, then setpriv drops to uid (and gid of
// the same number) with no supplementary groups, as an attacker's shell
// would be.
func StartHelperAsUserIn(t testing.TB, job string, uid uint32, name string) *HelperProc {
	t.Helper()
	cmd := HelperAsUser(t, job, uid)
	id := strconv.Itoa(int(uid))
	argv := append(append(InNetns(name), "setpriv", "--reuid="+id, "--regid="+id, "--clear-groups", cmd.Path), cmd.Args[1:]...)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		t.Fatal(err)
	}
	cmd.Path, cmd.Args, cmd.SysProcAttr = path, argv, nil
	h, err := spawn(cmd, job)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// HelperInNetns is Helper run in a new network namespace of its own.
func HelperInNetns(job string) *exec.Cmd {
	cmd := Helper(job)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	return cmd
}

// HelperProc is a running helper that said its first line.
type HelperProc struct {
	Cmd   *exec.Cmd
	PID   int      // from a "ready" line: the helper's (the child's, for inherit)
	Inode uint64   // from a "ready" line: its socket's inode (hold, keep)
	Line  []string // its first line, split into fields
	stdin io.WriteCloser
	out   *os.File
	lines chan string // what it says after its first line
}

// SpawnHelper starts a helper doing job, optionally wrapped in prefix
// (e.g. "ip", "netns", "exec", NAME), and waits for its first line (up to
// StartTimeout; a helper that exits first fails at once). The helper runs until Stop.
func SpawnHelper(job string, prefix ...string) (*HelperProc, error) {
	return spawnHelper(job, prefix, nil)
}

// spawnHelper is SpawnHelper with args added to the helper's command line
// (which the job ignores): what its argv looks like to others.
func spawnHelper(job string, prefix, args []string) (*HelperProc, error) {
	bin := HelperBinary()
	if len(prefix) > 0 {
		bin = os.Args[0] // run by another program (a container, nsenter) where only it may be seen
	}
	argv := append(append([]string{}, prefix...), bin, "-test.run=^$")
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+job)
	return spawn(cmd, job)
}

// spawn starts cmd, a helper doing job (directly or in a container), and
// waits for its first line: until it says it, exits (its stdout closes),
// or StartTimeout passes.
func spawn(cmd *exec.Cmd, job string) (*HelperProc, error) {
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// An explicit pipe, not cmd.StdoutPipe: an orphaned child (inherit)
	// keeps the write end, and Wait must not wait for it.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start helper %q: %w", job, err)
	}
	w.Close()
	h := &HelperProc{Cmd: cmd, stdin: stdin, out: r, lines: make(chan string, 16)}
	go func() {
		defer close(h.lines)
		rd := bufio.NewReader(r)
		for {
			l, err := rd.ReadString('\n')
			if l != "" {
				h.lines <- l
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case l := <-h.lines:
		h.Line = strings.Fields(l)
	case <-time.After(StartTimeout):
		h.Stop()
		return nil, fmt.Errorf("helper %q said nothing in %v", job, StartTimeout)
	}
	if len(h.Line) < 2 {
		h.Stop()
		return nil, fmt.Errorf("helper %q failed (said %q)", job, h.Line)
	}
	if h.Line[0] == "ready" {
		h.PID, _ = strconv.Atoi(h.Line[1])
		if len(h.Line) > 2 {
			h.Inode, _ = strconv.ParseUint(h.Line[2], 10, 64)
		}
	}
	return h, nil
}

// StartHelper is SpawnHelper for one test: it fails the test if the helper
// does not start, and stops it when the test ends.
func StartHelper(t testing.TB, job string, prefix ...string) *HelperProc {
	t.Helper()
	h, err := SpawnHelper(job, prefix...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// StartHelperArgs is StartHelper with args added to the helper's command
// line, which its job ignores: a process with a given argv (secrets, a
// long Java-like one) doing job.
func StartHelperArgs(t testing.TB, job string, args ...string) *HelperProc {
	t.Helper()
	h, err := spawnHelper(job, nil, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// WaitForParent waits until pid's parent is ppid (up to StartTimeout): an orphan has
// been reparented (to init, 1, or to a child subreaper).
func WaitForParent(t testing.TB, pid, ppid int) {
	t.Helper()
	last := -1
	for deadline := time.Now().Add(StartTimeout); ; {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// Field 4; the comm in field 2 may hold spaces and ')'.
			if i := strings.LastIndexByte(string(b), ')'); i > 0 {
				if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
					last, _ = strconv.Atoi(f[1])
				}
			}
		}
		if last == ppid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has parent %d, want %d", pid, last, ppid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Say sends a command line to a hold job (see runJob) and returns its
// answer, waiting until it answers or exits (up to StartTimeout): the
// proof it is alive and did it.
func (h *HelperProc) Say(command string) (string, error) {
	if _, err := io.WriteString(h.stdin, command+"\n"); err != nil {
		return "", fmt.Errorf("tell helper %q: %w", command, err)
	}
	select {
	case l, ok := <-h.lines:
		if !ok {
			return "", fmt.Errorf("helper exited instead of answering %q", command)
		}
		return strings.TrimSpace(l), nil
	case <-time.After(StartTimeout):
		return "", fmt.Errorf("helper did not answer %q within %v", command, StartTimeout)
	}
}

// Stop ends the helper (closing its stdin; killing it after 5 s) and waits
// until it is gone. Stopping twice is harmless.
func (h *HelperProc) Stop() {
	h.stdin.Close()
	h.out.Close()
	done := make(chan struct{})
	go func() { h.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.Cmd.Process.Kill()
		<-done
	}
}

// runJob does a helper's job. Jobs that hold something print one line and
// then wait for stdin to close:
//
//	bind PROTO ADDR PORT [options]    bind once; exit status is the errno (0: bound);
//	                                  options as parseOpts reads them
//	storm PROTO ADDR PORT N           bind N fresh sockets, ignoring errors
//	markedfail PORT MARK              listen on tcp 0.0.0.0:PORT, then bind a second
//	                                  socket with SO_MARK MARK (0: none) there → "errno N"
//	                                  (run it in a network namespace of its own)
//	keystorm ADDR LO HI SOCKETS PASSES
//	                                  PASSES times, bind each of SOCKETS tcp sockets
//	                                  to each port LO..HI of ADDR: as many distinct
//	                                  fold keys as SOCKETS×ports → "failed N" (how
//	                                  many binds failed)
//	hold PROTO ADDR PORT [options] [nolisten]
//	                                  bind (and listen, for tcp) → "ready PID INODE";
//	                                  then answers "close" (closes the socket, keeps
//	                                  running) with "closed", "listen" (a nolisten
//	                                  socket) with "listening", "ping" with "pong"
//	inherit ADDR PORT [killed]        listen on tcp ADDR:PORT, start a child ("keep")
//	                                  inheriting it as fd 3, exit at once with status 0
//	                                  (a daemon's launcher), or be killed by SIGKILL
//	keep                              → "ready PID INODE" of fd 3
//	orphan PROTO ADDR PORT [killed]   start a child holding PROTO ADDR:PORT ("hold"),
//	                                  pass on its ready line, exit at once (or be
//	                                  killed by SIGKILL)
//	subreaper JOB...                  become a child subreaper, run JOB as a child,
//	                                  reap every orphan until none is left
//	fdhog N                           open N fds (sockets, pipes) → "ready PID"
//	execwhen FILE                     → "ready PID"; once FILE exists, exec itself
//	                                  with another command line (same pid and
//	                                  start time), as fdhog 0
//	nonetadmin PROG ARGS...           drop CAP_NET_ADMIN and CAP_NET_RAW from the
//	                                  capability bounding set, then exec PROG (root
//	                                  without them; util-linux's `setpriv
//	                                  --bounding-set`, which busybox's lacks)
//	trybind PROTO ADDR PORT [options] → "errno N PID" (0: bound)
//	connect ADDR PORT [udp]           connect a TCP (or UDP) socket (the kernel picks
//	                                  its local port) → "ready PID INODE", or "errno N PID"
//	sendto ADDR PORT [sendmsg]        send a datagram from a fresh unbound UDP socket
//	                                  with sendto() (or sendmsg()): the kernel picks its
//	                                  local port → "ready PID", or "errno N PID"
//	autobind                          see exhaustAutobind (own netns only)
//	spread PROTO ADDR LO PORTS N      see spreadFailures → "failed F"
//	serve PROTO ADDR PORT GRACE_MS    a server: hold PROTO ADDR:PORT (SO_REUSEADDR)
//	                                  → "ready PID INODE"; on SIGTERM exit GRACE_MS
//	                                  later without closing it (the kernel does, at
//	                                  exit); needs no stdin (runs in the background
//	                                  of a shell script)
//	retry PROTO ADDR PORT EVERY_MS HOLD_MS
//	                                  "ready PID"; then bind (and listen, for tcp)
//	                                  with SO_REUSEADDR, retrying every EVERY_MS
//	                                  until it can; hold the port HOLD_MS, exit
//	holdfail ADDR N [udp] [keep]      see holdFail → "ready PID PORTS" (tcp unless udp;
//	                                  the holders closed unless keep)
//	hupproof PROTO ADDR PORT          hold PROTO ADDR:PORT ignoring SIGHUP
//	                                  → "ready PID INODE"; until stdin closes
//	sigflood PID SIG RATE MS          send signal SIG to PID RATE times a second
//	                                  for MS milliseconds → "sent N"
func runJob(args []string) error {
	if ok, err := runAttackJob(args); ok {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("bad job %q", args)
	}
	j, ok := jobs[args[0]]
	if !ok || len(args) < j.words {
		return fmt.Errorf("bad job %q", args)
	}
	return j.run(args)
}

// job is one helper job: how many words it needs at least, its name
// included, and what it does with them.
type job struct {
	words int
	run   func(args []string) error
}

// jobs are the helper jobs runJob dispatches, by name (filled in init:
// named runs runJob in turn).
var jobs map[string]job

func init() {
	jobs = map[string]job{
		"named":      {3, jobNamed},
		"bind":       {4, jobBind},
		"markedfail": {3, jobMarkedFail},
		"hupproof":   {4, jobHupProof},
		"sigflood":   {5, jobSigFlood},
		"holdfail":   {3, jobHoldFail},
		"keystorm":   {6, func(args []string) error { return keyStorm(args[1:]) }},
		"spread":     {6, func(args []string) error { return spreadFailures(args[1:]) }},
		"storm":      {5, jobStorm},
		"hold":       {4, jobHold},
		"inherit":    {3, jobInherit},
		"keep":       {1, jobKeep},
		"fdhog":      {2, jobFDHog},
		"execwhen":   {2, jobExecWhen},
		"nonetadmin": {2, jobNoNetAdmin},
		"trybind":    {4, jobTryBind},
		"connect":    {3, jobConnect},
		"sendto":     {3, jobSendto},
		"autobind":   {1, func(args []string) error { return exhaustAutobind() }},
		"serve":      {5, jobServe},
		"serveq":     {4, jobServeQueue},
		"hammer":     {4, jobHammer},
		"retry":      {6, jobRetry},
		"orphan":     {4, jobOrphan},
		"subreaper":  {2, jobSubreaper},
	}
}

// waitStdin waits until stdin closes: how a job that holds something
// knows the test is done with it.
func waitStdin() { io.Copy(io.Discard, os.Stdin) }

// named HEXNAME JOB...: JOB, by a process whose comm is set to the
// hex-encoded name with prctl(PR_SET_NAME), as any process can.
func jobNamed(args []string) error {
	name, err := hex.DecodeString(args[1])
	if err != nil {
		return fmt.Errorf("named: %w", err)
	}
	if unix.Gettid() != os.Getpid() {
		return fmt.Errorf("named: not on the main thread")
	}
	cname := append(name, 0)
	err = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0)
	runtime.KeepAlive(cname)
	if err != nil {
		return fmt.Errorf("named: PR_SET_NAME: %w", err)
	}
	return runJob(args[2:])
}

func jobBind(args []string) error {
	opts, err := parseOpts(args[4:])
	if err != nil {
		return err
	}
	fd, err := Socket(args[1], args[2], opts)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(args[3])
	err = Bind(fd, args[2], port)
	if errno, ok := err.(syscall.Errno); ok {
		os.Exit(int(errno))
	}
	return err
}

func jobMarkedFail(args []string) error {
	port, _ := strconv.Atoi(args[1])
	mark, _ := strconv.Atoi(args[2])
	if _, err := holdSocket([]string{"tcp", "0.0.0.0", args[1]}); err != nil {
		return err
	}
	fd, err := Socket("tcp", "0.0.0.0", Opts{})
	if err != nil {
		return err
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, mark); err != nil {
			return fmt.Errorf("set SO_MARK: %w", err)
		}
	}
	err = Bind(fd, "0.0.0.0", port)
	errno, _ := err.(syscall.Errno)
	fmt.Printf("errno %d\n", int(errno))
	return nil
}

func jobHupProof(args []string) error {
	signal.Ignore(syscall.SIGHUP)
	fd, err := holdSocket(args[1:])
	if err != nil {
		return err
	}
	fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
	waitStdin()
	return nil
}

func jobSigFlood(args []string) error {
	pid, _ := strconv.Atoi(args[1])
	sig, _ := strconv.Atoi(args[2])
	rate, _ := strconv.Atoi(args[3])
	ms, _ := strconv.Atoi(args[4])
	sent := 0
	start := time.Now()
	for d := time.Duration(ms) * time.Millisecond; time.Since(start) < d; {
		// Catch up to RATE a second, in bursts as the scheduler allows.
		for due := int(time.Since(start).Seconds() * float64(rate)); sent < due; sent++ {
			if err := syscall.Kill(pid, syscall.Signal(sig)); err != nil {
				return fmt.Errorf("sigflood: kill %d: %w", pid, err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("sent %d\n", sent)
	return nil
}

func jobHoldFail(args []string) error {
	proto, keep := "tcp", false
	for _, a := range args[3:] {
		switch a {
		case "udp":
			proto = "udp"
		case "keep":
			keep = true
		}
	}
	n, holders, err := holdFail(proto, args[1], args[2])
	if !keep {
		closeAll(holders)
	}
	if err != nil {
		return err
	}
	fmt.Printf("ready %d %d\n", os.Getpid(), n)
	waitStdin()
	closeAll(holders)
	return nil
}

func jobStorm(args []string) error {
	port, _ := strconv.Atoi(args[3])
	n, _ := strconv.Atoi(args[4])
	for i := 0; i < n; i++ {
		fd, err := Socket(args[1], args[2], Opts{})
		if err != nil {
			return err
		}
		Bind(fd, args[2], port)
		unix.Close(fd)
	}
	return nil
}

func jobHold(args []string) error {
	fd, err := holdSocket(args[1:])
	if err != nil {
		return err
	}
	fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "close":
			unix.Close(fd)
			fmt.Println("closed")
		case "listen":
			if err := unix.Listen(fd, 64); err != nil {
				return fmt.Errorf("hold: listen: %w", err)
			}
			fmt.Println("listening")
		case "ping":
			fmt.Println("pong")
		default:
			return fmt.Errorf("hold: unknown command %q", sc.Text())
		}
	}
	return nil
}

func jobInherit(args []string) error {
	fd, err := holdSocket([]string{"tcp", args[1], args[2]})
	if err != nil {
		return err
	}
	child := Helper("keep")
	child.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "listener")}
	child.Stdin, child.Stdout = os.Stdin, os.Stdout
	if err := child.Start(); err != nil {
		return err
	}
	return exitOrDie(args[3:]) // the child is orphaned
}

func jobKeep(args []string) error {
	fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(3))
	waitStdin()
	return nil
}

func jobFDHog(args []string) error {
	n, _ := strconv.Atoi(args[1])
	if err := openFDs(n); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", os.Getpid())
	waitStdin()
	return nil
}

func jobExecWhen(args []string) error {
	fmt.Printf("ready %d\n", os.Getpid())
	for {
		if _, err := os.Stat(args[1]); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	env := append(os.Environ(), helperEnv+"=fdhog 0")
	return syscall.Exec(os.Args[0], []string{os.Args[0], "-test.run=^$", "exec'd", "into", "another", "command", "line"}, env)
}

func jobNoNetAdmin(args []string) error {
	for _, c := range []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW} {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	env := slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, helperEnv+"=") })
	return syscall.Exec(args[1], args[1:], env)
}

func jobTryBind(args []string) error {
	opts, err := parseOpts(args[4:])
	if err != nil {
		return err
	}
	fd, err := Socket(args[1], args[2], opts)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(args[3])
	errno := 0
	if err := Bind(fd, args[2], port); err != nil {
		errno = int(err.(syscall.Errno))
	}
	fmt.Printf("errno %d %d\n", errno, os.Getpid())
	waitStdin()
	return nil
}

func jobConnect(args []string) error {
	proto := "tcp"
	if len(args) > 3 && args[3] == "udp" {
		proto = "udp"
	}
	fd, err := Socket(proto, args[1], Opts{})
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(args[2])
	if err := unix.Connect(fd, sockaddr(args[1], port)); err != nil {
		errno, _ := err.(syscall.Errno)
		fmt.Printf("errno %d %d\n", int(errno), os.Getpid())
	} else {
		fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
	}
	waitStdin()
	return nil
}

func jobServe(args []string) error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fd, err := holdSocket(append(args[1:4:4], "reuseaddr"))
	if err != nil {
		return err
	}
	fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
	grace, _ := strconv.Atoi(args[4])
	select {
	case <-term:
		time.Sleep(time.Duration(grace) * time.Millisecond)
		os.Exit(0) // the socket still open: the kernel closes it
	case <-time.After(time.Minute):
	}
	return nil
}

func jobRetry(args []string) error {
	port, _ := strconv.Atoi(args[3])
	every, _ := strconv.Atoi(args[4])
	hold, _ := strconv.Atoi(args[5])
	fmt.Printf("ready %d\n", os.Getpid())
	for {
		fd, err := Socket(args[1], args[2], Opts{ReuseAddr: true})
		if err != nil {
			return err
		}
		err = Bind(fd, args[2], port)
		if err == nil && args[1] == "tcp" {
			err = unix.Listen(fd, 64)
		}
		if err == nil {
			time.Sleep(time.Duration(hold) * time.Millisecond)
			return nil
		}
		unix.Close(fd)
		time.Sleep(time.Duration(every) * time.Millisecond)
	}
}

func jobOrphan(args []string) error {
	child := Helper("hold " + strings.Join(args[1:4], " "))
	child.Stdin = os.Stdin
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	// Exit only once the child listens, so that its parent at
	// listen() time is this process.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("orphan: child said nothing: %w", err)
	}
	fmt.Print(line)
	return exitOrDie(args[4:]) // the child is orphaned
}

func jobSubreaper(args []string) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	child := Helper(strings.Join(args[1:], " "))
	child.Stdin, child.Stdout = os.Stdin, os.Stdout
	if err := child.Start(); err != nil {
		return err
	}
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err == unix.ECHILD {
			return nil
		}
	}
}

// exitOrDie ends a job that leaves an orphan behind: a plain exit with
// status 0 (the way a daemon's launcher exits), or with "killed", by
// SIGKILL (an instance that is gone, leaving its child a leftover).
func exitOrDie(words []string) error {
	if slices.Contains(words, "killed") {
		unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	}
	return nil
}

// parseOpts reads a job's socket options: reuseaddr, reuseport, v6only,
// dualstack, freebind, dev=NAME, ifindex=N.
func parseOpts(words []string) (Opts, error) {
	var opts Opts
	for _, o := range words {
		switch name, value, _ := strings.Cut(o, "="); name {
		case "reuseaddr":
			opts.ReuseAddr = true
		case "reuseport":
			opts.ReusePort = true
		case "v6only", "dualstack":
			v6only := o == "v6only"
			opts.V6Only = &v6only
		case "freebind":
			opts.FreeBind = true
		case "dev":
			opts.Device = value
		case "ifindex":
			opts.Ifindex, _ = strconv.Atoi(value)
		default:
			return opts, fmt.Errorf("unknown socket option %q", o)
		}
	}
	return opts, nil
}

// holdSocket makes the socket of a hold job: PROTO ADDR PORT [options]
// [nolisten] [comm=NAME]. comm=NAME renames the process first, as a
// docker-proxy or a systemd would be named.
func holdSocket(args []string) (int, error) {
	listen := args[0] == "tcp"
	if i := slices.Index(args, "nolisten"); i >= 3 {
		listen = false
		args = slices.Delete(slices.Clone(args), i, i+1)
	}
	if i := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "comm=") }); i >= 3 {
		// /proc/self/comm is the thread group leader's: the name ps,
		// /proc/PID/stat and bindwatch show.
		if err := os.WriteFile("/proc/self/comm", []byte(strings.TrimPrefix(args[i], "comm=")), 0); err != nil {
			return -1, fmt.Errorf("rename the process: %w", err)
		}
		args = slices.Delete(slices.Clone(args), i, i+1)
	}
	opts, err := parseOpts(args[3:])
	if err != nil {
		return -1, err
	}
	fd, err := Socket(args[0], args[1], opts)
	if err != nil {
		return -1, err
	}
	// The socket must survive exec into an inheriting child.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return -1, err
	}
	port, _ := strconv.Atoi(args[2])
	if err := Bind(fd, args[1], port); err != nil {
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

// openFDs opens n file descriptors — TCP and UDP sockets and pipes — for a
// crowd of fds to measure against, raising RLIMIT_NOFILE as far as allowed.
func openFDs(n int) error {
	raiseNoFile(n + 64)
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
	return nil
}

// raiseNoFile raises RLIMIT_NOFILE to n fds, or as far as allowed.
func raiseNoFile(n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n) {
		lim.Cur = min(lim.Max, uint64(n))
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}

// exhaustAutobind shrinks this network namespace's ephemeral range to two
// ports, listens on both, then calls listen() on a socket never bound: the
// kernel's autobind finds no port and listen() fails with EADDRINUSE. Run
// it only in a namespace of its own (HelperInNetns).
func exhaustAutobind() error {
	// /proc/sys/net is the namespace of whoever opens it: ours.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("40000 40001"), 0); err != nil {
		return fmt.Errorf("shrink the ephemeral range: %w", err)
	}
	for _, port := range []int{40000, 40001} {
		fd, err := Socket("tcp", "0.0.0.0", Opts{})
		if err == nil {
			err = Bind(fd, "0.0.0.0", port)
		}
		if err == nil {
			err = unix.Listen(fd, 1)
		}
		if err != nil {
			return fmt.Errorf("listen on %d: %w", port, err)
		}
	}
	fd, err := Socket("tcp", "0.0.0.0", Opts{})
	if err != nil {
		return err
	}
	if err := unix.Listen(fd, 1); err != syscall.EADDRINUSE {
		return fmt.Errorf("listen without bind = %v, want EADDRINUSE (ephemeral ports used up)", err)
	}
	return nil
}

// keyStorm is the keystorm job: ADDR LO HI SOCKETS PASSES. A failed bind
// leaves its socket unbound, so each socket fails again on the next port.
// The storm is sized by its work, not by seconds: an emulated kernel makes
// a few thousand failures a second where this host makes a million.
func keyStorm(args []string) error {
	lo, _ := strconv.Atoi(args[1])
	hi, _ := strconv.Atoi(args[2])
	n, _ := strconv.Atoi(args[3])
	passes, _ := strconv.Atoi(args[4])
	fds := make([]int, n)
	for i := range fds {
		fd, err := Socket("tcp", args[0], Opts{})
		if err != nil {
			return fmt.Errorf("socket %d: %w", i, err)
		}
		fds[i] = fd
	}
	failed := 0
	for range passes {
		for port := lo; port <= hi; port++ {
			for _, fd := range fds {
				if Bind(fd, args[0], port) != nil {
					failed++
				}
			}
		}
	}
	fmt.Printf("failed %d\n", failed)
	return nil
}

// spreadFailures: spread PROTO ADDR LO PORTS N — N failing binds of one
// socket to ADDR (an address the host does not have: EADDRNOTAVAIL, no
// holder needed) spread evenly over PORTS ports from LO; prints
// "failed F".
func spreadFailures(args []string) error {
	lo, _ := strconv.Atoi(args[2])
	ports, _ := strconv.Atoi(args[3])
	n, _ := strconv.Atoi(args[4])
	fd, err := Socket(args[0], args[1], Opts{})
	if err != nil {
		return err
	}
	failed := 0
	for i := range n {
		if Bind(fd, args[1], lo+i%ports) == unix.EADDRNOTAVAIL {
			failed++
		}
	}
	fmt.Printf("failed %d\n", failed)
	return nil
}

// holdFail takes n ports of proto on addr (binding port 0, and listening
// for tcp) and fails one bind() on each with another socket: n incidents
// opened. It returns how many failed, and the holders' fds: closed, the
// incidents are left with the port free and nobody retrying — the way any
// user can open many incidents at once; kept, n holders stay to poll.
func holdFail(proto, addr, count string) (int, []int, error) {
	n, _ := strconv.Atoi(count)
	var listeners []int
	failed := 0
	for range n {
		fd, err := Socket(proto, addr, Opts{})
		if err != nil {
			return failed, listeners, err
		}
		listeners = append(listeners, fd)
		if err := Bind(fd, addr, 0); err != nil {
			return failed, listeners, err
		}
		if proto == "tcp" {
			if err := unix.Listen(fd, 1); err != nil {
				return failed, listeners, err
			}
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return failed, listeners, err
		}
		var port int
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			port = a.Port
		case *unix.SockaddrInet6:
			port = a.Port
		}
		other, err := Socket(proto, addr, Opts{})
		if err != nil {
			return failed, listeners, err
		}
		if Bind(other, addr, port) != nil {
			failed++
		}
		unix.Close(other)
	}
	return failed, listeners, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// StartHelperInCgroup is StartHelper whose helper starts in the cgroup v2
// directory open at cgroupFD (clone3's CLONE_INTO_CGROUP): a process of a
// unit, as systemd starts one.
func StartHelperInCgroup(t testing.TB, job string, cgroupFD int) *HelperProc {
	t.Helper()
	cmd := exec.Command(HelperBinary(), "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+job)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	h, err := spawn(cmd, job)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// sendto ADDR PORT [sendmsg]: a datagram from a fresh unbound UDP socket.
func jobSendto(args []string) error {
	fd, err := Socket("udp", args[1], Opts{})
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(args[2])
	to := sockaddr(args[1], port)
	if len(args) > 3 && args[3] == "sendmsg" {
		_, err = unix.SendmsgN(fd, []byte("x"), nil, to, 0)
	} else {
		err = unix.Sendto(fd, []byte("x"), 0, to)
	}
	if err != nil {
		errno, _ := err.(syscall.Errno)
		fmt.Printf("errno %d %d\n", int(errno), os.Getpid())
	} else {
		fmt.Printf("ready %d\n", os.Getpid())
	}
	waitStdin()
	return nil
}
