// Package testenv is what bindwatch's tests share: the rule that BPF tests
// run for real as root (and fail, not skip, where CI requires them), and
// helper processes made by re-executing the test binary, so the same tests
// run on a bare VM that has no python or socat.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// RequireRoot skips a test that needs root — unless BINDWATCH_REQUIRE_BPF=1
// (set by .ci/run and the VM harness), where running without root is a
// failure: CI must never pass by skipping the BPF tests.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	Missing(t, "needs root (BPF programs, network namespaces, other users' processes; run with sudo)")
}

// Backend is the backend under test: BINDWATCH_TEST_BACKEND, or "auto".
func Backend() string {
	if b := os.Getenv("BINDWATCH_TEST_BACKEND"); b != "" {
		return b
	}
	return "auto"
}

// Opts are socket options set before bind.
type Opts struct {
	ReuseAddr bool
	ReusePort bool
	// V6Only sets IPV6_V6ONLY to 1 (true) or 0 (false) on IPv6 sockets;
	// nil leaves the system default.
	V6Only *bool
	// FreeBind sets IP_FREEBIND (IPV6_FREEBIND on IPv6 sockets).
	FreeBind bool
	// Device binds the socket to an interface by name (SO_BINDTODEVICE),
	// Ifindex by index (SO_BINDTOIFINDEX, 5.0+).
	Device  string
	Ifindex int
}

// Socket makes a raw socket for proto ("tcp" or "udp") in the family of
// addr, with opts set. Raw sockets, not package net: net.Listen sets
// SO_REUSEADDR itself and tries MPTCP first.
func Socket(proto, addr string, opts Opts) (int, error) {
	family := unix.AF_INET
	if netip.MustParseAddr(addr).Is6() {
		family = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	set := func(level, opt int, on bool) {
		v := 0
		if on {
			v = 1
		}
		if err == nil {
			err = unix.SetsockoptInt(fd, level, opt, v)
		}
	}
	set(unix.SOL_SOCKET, unix.SO_REUSEADDR, opts.ReuseAddr)
	set(unix.SOL_SOCKET, unix.SO_REUSEPORT, opts.ReusePort)
	if opts.V6Only != nil && family == unix.AF_INET6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, *opts.V6Only)
	}
	if opts.FreeBind && family == unix.AF_INET6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, true)
	} else if opts.FreeBind {
		set(unix.IPPROTO_IP, unix.IP_FREEBIND, true)
	}
	if opts.Device != "" && err == nil {
		err = unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, opts.Device)
	}
	if opts.Ifindex != 0 && err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, opts.Ifindex)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Bind binds fd to addr:port.
func Bind(fd int, addr string, port int) error {
	return unix.Bind(fd, sockaddr(addr, port))
}

// sockaddr is addr:port for bind() and connect().
func sockaddr(addr string, port int) unix.Sockaddr {
	a := netip.MustParseAddr(addr)
	if a.Is6() {
		return &unix.SockaddrInet6{Addr: a.As16(), Port: port}
	}
	return &unix.SockaddrInet4{Addr: a.As4(), Port: port}
}

// Hold binds (and for TCP listens on) a socket and returns its fd.
func Hold(t testing.TB, proto, addr string, port int, opts Opts) int {
	t.Helper()
	fd, err := Socket(proto, addr, opts)
	if err != nil {
		t.Fatalf("socket %s %s: %v", proto, addr, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := Bind(fd, addr, port); err != nil {
		t.Fatalf("bind %s %s:%d: %v", proto, addr, port, err)
	}
	if proto == "tcp" {
		if err := unix.Listen(fd, 16); err != nil {
			t.Fatalf("listen %s:%d: %v", addr, port, err)
		}
	}
	return fd
}

// FailBind makes a fresh socket and binds it, expecting want.
func FailBind(t testing.TB, proto, addr string, port int, opts Opts, want syscall.Errno) {
	t.Helper()
	fd, err := Socket(proto, addr, opts)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(fd)
	if err := Bind(fd, addr, port); err != want {
		t.Fatalf("bind %s %s:%d = %v, want %v", proto, addr, port, err, want)
	}
}

// FreePort returns a port that is free for both TCP and UDP right now,
// and that no other test program using FreePort is given until this test
// ends. Test programs run at the same time (the packages of one go test,
// two whole runs at once), each in the host's network namespace or in
// namespaces of their own: a port free here may be another program's in
// its namespace, and its tracer sees failures on the number everywhere. A
// lock on the port's byte of one shared file (an open file description
// lock, released with the test or the process) keeps each number to one
// test program at a time.
func FreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		fd, err := Socket("tcp", "0.0.0.0", Opts{})
		if err != nil {
			t.Fatal(err)
		}
		if err := Bind(fd, "0.0.0.0", 0); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(fd)
		unix.Close(fd)
		port := sa.(*unix.SockaddrInet4).Port
		ufd, _ := Socket("udp", "::", Opts{})
		err = Bind(ufd, "::", port)
		unix.Close(ufd)
		if err == nil && reservePort(t, port) {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

var (
	portLockOnce sync.Once
	portLock     *os.File // nil: no lock file could be opened; FreePort does without
)

// portLockFile is the file whose byte N is locked by the test program
// that was given port N: one per user (another user's would be theirs to
// hold, or not ours to open).
var portLockFile = fmt.Sprintf("/tmp/bindwatch-test-ports.%d.lock", os.Geteuid())

// reservePort locks port's byte of portLockFile until t ends: false if
// another test program holds it. Locks of one process do not conflict
// (one open file description), as two ports of one test never did.
func reservePort(t testing.TB, port int) bool {
	portLockOnce.Do(func() {
		f, err := os.OpenFile(portLockFile, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return
		}
		// Planted by another user, its locks would be theirs to hold.
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
			f.Close()
			return
		}
		portLock = f
	})
	if portLock == nil {
		return true
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: int64(port), Len: 1}
	switch err := unix.FcntlFlock(portLock.Fd(), unix.F_OFD_SETLK, &lk); {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES):
		return false // another test program's
	case err != nil:
		return true // no such locks here (before Linux 3.15): as before them
	}
	t.Cleanup(func() {
		un := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart, Start: int64(port), Len: 1}
		unix.FcntlFlock(portLock.Fd(), unix.F_OFD_SETLK, &un)
	})
	return true
}

// Netns is the inode of this process's network namespace.
func Netns(t testing.TB) uint32 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// LeaveTimeWait makes a real TCP connection to addr:port and closes the
// server's side first, which leaves the server's socket in TIME_WAIT on the
// port for Linux's fixed 60 s. The listener sets SO_REUSEADDR if
// listenerReuse (the TIME_WAIT socket keeps the flag). It returns once the
// kernel lists the socket as TIME_WAIT.
func LeaveTimeWait(t testing.TB, addr string, port int, listenerReuse bool) {
	t.Helper()
	LeaveTimeWaitOpts(t, addr, port, Opts{ReuseAddr: listenerReuse})
}

// LeaveTimeWaitOpts is LeaveTimeWait with the listener's options (the
// TIME_WAIT socket keeps SO_REUSEADDR and SO_REUSEPORT). It works in the
// network namespace of the calling thread (see InPrivateNetns).
func LeaveTimeWaitOpts(t testing.TB, addr string, port int, opts Opts) {
	t.Helper()
	ln, err := Socket("tcp", addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := Bind(ln, addr, port); err != nil {
		t.Fatalf("bind %s:%d for TIME_WAIT: %v", addr, port, err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		t.Fatal(err)
	}
	cl, err := Socket("tcp", addr, Opts{})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cl)
	if err := unix.Connect(cl, sockaddr(addr, port)); err != nil {
		t.Fatalf("connect %s:%d: %v", addr, port, err)
	}
	srv, _, err := unix.Accept(ln)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(srv) // the server closes first: its side goes to TIME_WAIT
	time.Sleep(20 * time.Millisecond)
	unix.Close(cl)
	for deadline := time.Now().Add(2 * time.Second); !hasTimeWait(port); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no TIME_WAIT socket on port %d after closing the connection", port)
		}
	}
}

// hasTimeWait finds a TIME_WAIT socket (state 06) on local port in the
// calling thread's network namespace's /proc/net/tcp or tcp6.
func hasTimeWait(port int) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 3 && strings.HasSuffix(fields[1], suffix) && fields[3] == "06" {
				return true
			}
		}
	}
	return false
}

// WaitForFile waits up to timeout for path to exist (a --ready-file, a
// marker a helper touches). On timeout the test fails with what context
// returns (stderr, a terminal's screen), if context is not nil.
func WaitForFile(t testing.TB, path string, timeout time.Duration, context func() string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			msg := ""
			if context != nil {
				msg = context()
			}
			t.Fatalf("%s did not appear within %v\n%s", path, timeout, msg)
		}
	}
}

// StartTimeout bounds how long a process under test may take to say it
// is ready (its ready file, its first line): loading and verifying the
// BPF programs takes a second on an idle machine and far longer on a
// loaded one. It is no measure of speed, only a bound for a process
// that hangs; one that exits is noticed at once (WaitForReady).
const StartTimeout = 3 * time.Minute

// WaitForReady waits until path exists, written by p once it is ready:
// it fails the test as soon as p has exited without writing it, or
// after StartTimeout, with context() (the process's stderr) either way.
func WaitForReady(t testing.TB, path string, p *os.Process, context func() string) {
	t.Helper()
	for deadline := time.Now().Add(StartTimeout); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Lstat(path); err == nil {
			return
		}
		msg := func() string {
			if context == nil {
				return ""
			}
			return context()
		}
		if Exited(p.Pid) {
			if _, err := os.Lstat(path); err == nil {
				return // written just before it exited: the test's to judge
			}
			t.Fatalf("pid %d exited without writing %s\n%s", p.Pid, path, msg())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v, pid %d still running\n%s", path, StartTimeout, p.Pid, msg())
		}
	}
}

// Exited says whether the child pid has exited (a zombie not yet
// waited for, or gone), without waiting for it: the caller's
// cmd.Wait still reaps it. All of it: a killed process's leader shows Z as
// soon as its own thread is done, while its other threads (a Go helper has
// several) may still be exiting, and the last of them is what closes the
// fd table and the sockets in it.
func Exited(pid int) bool {
	st, err := host.ReadStat(pid)
	if err != nil {
		return true
	}
	if !st.Exited() {
		return false
	}
	tids, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return true
	}
	for _, d := range tids {
		// /proc/TID/stat is the thread's own state; gone means released.
		tid, _ := strconv.Atoi(d.Name())
		if st, err := host.ReadStat(tid); err == nil && !st.Exited() {
			return false
		}
	}
	return true
}

// SyncBuffer is a bytes.Buffer that one goroutine may read while another
// writes to it: a command's stderr, a session's output.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *SyncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *SyncBuffer) String() string { return string(b.Bytes()) }

// Cgroup is a cgroup v2 directory made for one test.
type Cgroup struct {
	Dir  string // absolute path under the cgroup2 mount
	Path string // as /proc/PID/cgroup names it ("/bindwatch-test-…")
	ID   uint64 // the kernel's cgroup id: the directory's file handle
	FD   int    // open directory, for SysProcAttr.CgroupFD
}

// NewCgroup makes a fresh cgroup v2 directory, removed when the test ends
// (after the processes started in it have exited: start them after this).
// Its id is read with name_to_handle_at, the kernel's own answer to what
// bpf_get_current_cgroup_id returns for a process in it.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	mount, root := cgroup2Mount(t)
	dir, err := os.MkdirTemp(mount, "bindwatch-test-")
	if err != nil {
		t.Fatalf("make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Rmdir(dir); err != nil {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	})
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil || h.Size() != 8 {
		t.Fatalf("name_to_handle_at %s: %v (%d bytes)", dir, err, h.Size())
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	b := h.Bytes()
	id := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	path := strings.TrimSuffix(root, "/") + "/" + strings.TrimPrefix(dir, mount+"/")
	return &Cgroup{Dir: dir, Path: path, ID: id, FD: fd}
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host) and the
// cgroup it shows at its root.
func cgroup2Mount(t testing.TB) (mount, root string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) > 0 && g[0] == "cgroup2" {
			return f[4], f[3]
		}
	}
	t.Fatal("no cgroup2 hierarchy mounted (/proc/self/mountinfo)")
	return "", ""
}

// NewNetns makes a network namespace of its own for one test, with lo up
// (so 127.0.0.1 and ::1 exist) and the kernel's default sysctls, removed
// when the test ends. Like `ip netns add` it is bind-mounted at
// /run/netns/NAME — so `ip netns exec NAME` works as a helper's prefix, and
// bindwatch finds it with no process in it — but it needs no iproute2 (a
// bare VM has none). It returns its name and inode.
func NewNetns(t testing.TB) (name string, inode uint32) {
	t.Helper()
	RequireRoot(t)
	name = fmt.Sprintf("bwtest%d-%d", os.Getpid(), netnsSeq.Add(1))
	path := "/run/netns/" + name
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	err := host.InNetns(nil, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		if err := linkUp("lo"); err != nil {
			return err
		}
		return unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	})
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
	})
	if err != nil {
		t.Fatalf("new network namespace %s: %v", name, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return name, uint32(st.Ino)
}

var netnsSeq atomic.Int32

// SetNetnsSysctl writes a net sysctl (key as in /proc/sys, e.g.
// "net/ipv4/ip_local_port_range") inside the network namespace name: net
// sysctls belong to the namespace of whoever opens them.
func SetNetnsSysctl(t testing.TB, name, key, value string) {
	t.Helper()
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	InPrivateNetns(t, ns, func() { Sysctl(t, key, value) })
}

// InNetns is the command prefix that runs a command in the network
// namespace name (from NewNetns): nsenter, which busybox has too, where
// `ip netns exec` needs iproute2.
func InNetns(name string) []string {
	return []string{"nsenter", "--net=/run/netns/" + name}
}

// PrivateNetns is NewNetns opened, to run code in with InPrivateNetns:
// ports, port ranges and sysctls there touch nothing else on the host.
func PrivateNetns(t testing.TB) *os.File {
	t.Helper()
	name, _ := NewNetns(t)
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatalf("open network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// InPrivateNetns runs fn on a thread inside ns (from PrivateNetns), with
// host.InNetns: the sockets it makes, the /proc/sys/net and
// /proc/thread-self/net files it opens, and the processes it starts are in
// ns. fn may call t.Fatal, and may panic: the thread returns to the test's
// namespace either way, and the test fails (or panics) here.
func InPrivateNetns(t testing.TB, ns *os.File, fn func()) {
	t.Helper()
	var panicked any
	returned := false
	err := host.InNetns(ns, func() error {
		defer func() {
			if !returned {
				panicked = recover()
			}
		}()
		fn()
		returned = true
		return nil
	})
	if !returned { // err says only that fn did not return
		if panicked != nil {
			panic(panicked)
		}
		t.FailNow() // fn called t.FailNow
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Sysctl writes a /proc/sys file (e.g. "net/ipv4/tcp_tw_reuse") in the
// calling thread's namespaces.
func Sysctl(t testing.TB, name, value string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0); err != nil {
		t.Fatalf("sysctl %s=%s: %v", strings.ReplaceAll(name, "/", "."), value, err)
	}
}

// linkUp sets an interface up (SIOCSIFFLAGS) in the calling thread's
// network namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get %s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// ChildPIDs lists the processes whose parent is pid now (from /proc).
func ChildPIDs(pid int) []int {
	var kids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parens.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, child)
		}
	}
	return kids
}

// Comm is the command name of pid ("" when it is gone).
func Comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// Tracefs mounts tracefs at /sys/kernel/tracing when neither of its usual
// places has it, as systemd does at boot (sys-kernel-tracing.mount), and
// leaves it mounted: a test of what bindwatch does with fewer privileges
// than root's starts from a booted host's mounts, not from whichever test
// ran before it. Without CAP_SYS_ADMIN bindwatch cannot mount it itself.
func Tracefs(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if err := host.EnsureTracefs(); err != nil {
		t.Fatalf("mount tracefs (as systemd does at boot): %v", err)
	}
}

// BPFFS makes sure a bpffs is mounted at /sys/fs/bpf, as systemd mounts
// it at boot (a tracer shares its iterators there): mounted if it is not,
// and left mounted, under a lock so that test programs running at once
// mount it once.
func BPFFS(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	lock, err := os.OpenFile(fmt.Sprintf("/tmp/bindwatch-test-bpffs.%d.lock", os.Geteuid()), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		t.Fatalf("bpffs lock: %v", err)
	}
	defer lock.Close()
	// /tmp is everyone's: a lock file another user made first could be
	// held by them for ever (O_NOFOLLOW already refuses a symlink).
	var st unix.Stat_t
	if err := unix.Fstat(int(lock.Fd()), &st); err != nil || st.Uid != uint32(os.Geteuid()) || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("bpffs lock %s: not a regular file of uid %d (stat: %v); remove it", lock.Name(), os.Geteuid(), err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("bpffs lock: %v", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &fs); err == nil && fs.Type == unix.BPF_FS_MAGIC {
		return
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpffs at /sys/fs/bpf (as systemd does at boot): %v", err)
	}
	t.Log("mounted a bpffs at /sys/fs/bpf (left mounted, as systemd has it)")
}
