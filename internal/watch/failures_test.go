package watch

import (
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// conflict is one real failing bind and what bindwatch must say about it.
type conflict struct {
	name                 string
	holdProto, holdAddr  string
	holdOpts             testenv.Opts
	proto, addr          string
	opts                 testenv.Opts
	want                 syscall.Errno
	wantFamily, wantAddr string
	wantV6Only           *bool
}

var (
	on  = true
	off = false
)

func TestBindFailures(t *testing.T) {
	for _, c := range []conflict{
		{name: "tcp4 same address", holdProto: "tcp", holdAddr: "127.0.0.1", proto: "tcp", addr: "127.0.0.1",
			want: syscall.EADDRINUSE, wantFamily: "ipv4", wantAddr: "127.0.0.1"},
		{name: "tcp6 same address", holdProto: "tcp", holdAddr: "::1", proto: "tcp", addr: "::1",
			want: syscall.EADDRINUSE, wantFamily: "ipv6", wantAddr: "::1", wantV6Only: &off},
		{name: "udp4", holdProto: "udp", holdAddr: "127.0.0.1", proto: "udp", addr: "127.0.0.1",
			want: syscall.EADDRINUSE, wantFamily: "ipv4", wantAddr: "127.0.0.1"},
		{name: "udp6", holdProto: "udp", holdAddr: "::1", proto: "udp", addr: "::1",
			want: syscall.EADDRINUSE, wantFamily: "ipv6", wantAddr: "::1", wantV6Only: &off},
		{name: "dual-stack :: against 0.0.0.0", holdProto: "tcp", holdAddr: "0.0.0.0", proto: "tcp", addr: "::",
			opts: testenv.Opts{V6Only: &off}, want: syscall.EADDRINUSE, wantFamily: "ipv6", wantAddr: "::", wantV6Only: &off},
		{name: "specific against wildcard", holdProto: "tcp", holdAddr: "0.0.0.0", proto: "tcp", addr: "127.0.0.1",
			want: syscall.EADDRINUSE, wantFamily: "ipv4", wantAddr: "127.0.0.1"},
		{name: "reuseaddr against listener", holdProto: "tcp", holdAddr: "127.0.0.1", holdOpts: testenv.Opts{ReuseAddr: true},
			proto: "tcp", addr: "127.0.0.1", opts: testenv.Opts{ReuseAddr: true},
			want: syscall.EADDRINUSE, wantFamily: "ipv4", wantAddr: "127.0.0.1"},
		{name: "v4-mapped", holdProto: "tcp", holdAddr: "127.0.0.1", proto: "tcp", addr: "::ffff:127.0.0.1",
			want: syscall.EADDRINUSE, wantFamily: "ipv6", wantAddr: "::ffff:127.0.0.1", wantV6Only: &off},
		{name: "address not on host", proto: "tcp", addr: "203.0.113.77",
			want: syscall.EADDRNOTAVAIL, wantFamily: "ipv4", wantAddr: "203.0.113.77"},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			s := startSession(t, onlyPort(port))
			if c.holdProto != "" {
				testenv.Hold(t, c.holdProto, c.holdAddr, port, c.holdOpts)
			}
			testenv.FailBind(t, c.proto, c.addr, port, c.opts, c.want)
			f := s.waitFailure(port)

			if f.Syscall != "bind" || f.Errno != events.ErrnoName(c.want) || f.ErrnoCode != int(c.want) {
				t.Errorf("syscall/errno = %s %s(%d), want bind %s(%d)", f.Syscall, f.Errno, f.ErrnoCode, events.ErrnoName(c.want), c.want)
			}
			if f.Proto != c.proto || f.Family != c.wantFamily || f.Addr != c.wantAddr || int(f.Port) != port {
				t.Errorf("request = %s %s %s:%d, want %s %s %s:%d", f.Proto, f.Family, f.Addr, f.Port, c.proto, c.wantFamily, c.wantAddr, port)
			}
			if f.Socket.ReuseAddr != c.opts.ReuseAddr || f.Socket.ReusePort != c.opts.ReusePort {
				t.Errorf("socket = %+v, want reuseaddr=%v reuseport=%v", f.Socket, c.opts.ReuseAddr, c.opts.ReusePort)
			}
			if (f.Socket.V6Only == nil) != (c.wantV6Only == nil) || (f.Socket.V6Only != nil && *f.Socket.V6Only != *c.wantV6Only) {
				t.Errorf("v6only = %v, want %v", ptrString(f.Socket.V6Only), ptrString(c.wantV6Only))
			}
			checkSelf(t, f)
			if c.holdProto != "" && heldBy(f, os.Getpid()) == nil {
				t.Errorf("holders %+v: want this process (pid %d), which holds %s:%d", f.Holders, os.Getpid(), c.holdAddr, port)
			}
		})
	}
}

// checkSelf checks the failing-process fields for a failure of this test
// process (on the thread that called bind).
func checkSelf(t *testing.T, f events.Failure) {
	t.Helper()
	p := f.Process
	if p.PID != os.Getpid() || p.PPID != os.Getppid() || p.UID != uint32(os.Getuid()) {
		t.Errorf("process = pid %d ppid %d uid %d, want %d %d %d", p.PID, p.PPID, p.UID, os.Getpid(), os.Getppid(), os.Getuid())
	}
	if p.TID == 0 {
		t.Error("tid is zero")
	}
	exe, _ := os.Executable()
	if len(p.Cmdline) == 0 || p.Cmdline[0] != os.Args[0] {
		t.Errorf("cmdline = %q, want it to start with %q", p.Cmdline, os.Args[0])
	}
	if p.Exe != exe {
		t.Errorf("exe = %q, want %q", p.Exe, exe)
	}
	if p.Netns != testenv.Netns(t) {
		t.Errorf("netns = %d, want %d", p.Netns, testenv.Netns(t))
	}
	if p.Comm == "" || p.CgroupID == 0 || p.StartTime.IsZero() {
		t.Errorf("comm %q cgroup_id %d start_time %v: want all set", p.Comm, p.CgroupID, p.StartTime)
	}
	// The kernel's start time is the process's (its leader's), as /proc
	// says it to the clock tick.
	proc := events.Process{PID: os.Getpid()}
	resolve.FillProcess(&proc)
	if d := p.StartTime.Sub(proc.StartTime); d < -20*time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("start_time %v, /proc says %v", p.StartTime, proc.StartTime)
	}
	if d := time.Since(f.Time); d < 0 || d > 10*time.Second {
		t.Errorf("time %v is %v from now", f.Time, d)
	}
	if f.Host == "" || f.Backend == "" || f.Hook == "" || f.Version != events.Version {
		t.Errorf("host %q backend %q hook %q version %d: want all set", f.Host, f.Backend, f.Hook, f.Version)
	}
}

func ptrString(b *bool) string {
	if b == nil {
		return "absent"
	}
	if *b {
		return "true"
	}
	return "false"
}

// EACCES: an unprivileged uid binding below ip_unprivileged_port_start —
// in a network namespace of the test's own, where the sysctl is set here
// (it is per namespace), whatever the host's is.
func TestPrivilegedPort(t *testing.T) {
	const port = 987
	s := startSession(t, onlyPort(port))
	ns := testenv.PrivateNetns(t)
	cmd := testenv.HelperAsUser(t, "bind tcp 127.0.0.1 "+strconv.Itoa(port), 65534)
	var err error
	testenv.InPrivateNetns(t, ns, func() {
		testenv.Sysctl(t, "net/ipv4/ip_unprivileged_port_start", "1024")
		err = cmd.Run()
	})
	if code := cmd.ProcessState.ExitCode(); code != int(syscall.EACCES) {
		t.Fatalf("helper bind exit %d (%v), want EACCES", code, err)
	}
	f := s.waitFailure(port)
	if f.Errno != "EACCES" || f.Process.UID != 65534 || f.Process.PID != cmd.Process.Pid {
		t.Errorf("got %s uid %d pid %d, want EACCES uid 65534 pid %d", f.Errno, f.Process.UID, f.Process.PID, cmd.Process.Pid)
	}
	if f.Process.CapNetBindService == nil || *f.Process.CapNetBindService {
		t.Errorf("cap_net_bind_service = %v, want false", ptrString(f.Process.CapNetBindService))
	}
}

// listen() fails when two sockets share a port with SO_REUSEADDR (allowed
// while neither listens) and both try to listen.
func TestListenFailure(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	opts := testenv.Opts{ReuseAddr: true}
	a, err := testenv.Socket("tcp", "127.0.0.1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(a)
	b, _ := testenv.Socket("tcp", "127.0.0.1", opts)
	defer unix.Close(b)
	if err := testenv.Bind(a, "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Bind(b, "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(a, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(b, 1); err != syscall.EADDRINUSE {
		t.Fatalf("second listen = %v, want EADDRINUSE", err)
	}
	f := s.waitFailure(port)
	if f.Syscall != "listen" || f.Errno != "EADDRINUSE" || f.Addr != "127.0.0.1" || !f.Socket.ReuseAddr {
		t.Errorf("got %s %s %s reuseaddr=%v, want listen EADDRINUSE 127.0.0.1 reuseaddr=true", f.Syscall, f.Errno, f.Addr, f.Socket.ReuseAddr)
	}
	checkSelf(t, f)
}

// bind() on a socket that is already bound is EINVAL.
func TestAlreadyBound(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	fd := testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	if err := testenv.Bind(fd, "127.0.0.1", port); err != syscall.EINVAL {
		t.Fatalf("rebind = %v, want EINVAL", err)
	}
	f := s.waitFailure(port)
	if f.Errno != "EINVAL" || f.Proto != "udp" {
		t.Errorf("got %s %s, want EINVAL udp", f.Errno, f.Proto)
	}
}

// A successful bind and listen produce nothing; a failure after them is
// the only record.
func TestSuccessIsSilent(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	s.waitFailure(port)
	recs := s.stop()
	var types []string
	for _, r := range recs {
		types = append(types, r["type"].(string))
	}
	if want := []string{"start", "bind_failure", "stop"}; !slices.Equal(types, want) {
		t.Errorf("records %v, want %v", types, want)
	}
}
