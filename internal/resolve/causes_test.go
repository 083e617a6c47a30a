package resolve

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// These tests make each cause happen for real and check the diagnosis
// against the kernel: where a hint says that doing X lets the bind
// succeed (or that Y does not help), the test does X (or Y) and binds.

// wantCause resolves f and checks its cause and the words its diagnosis
// and hint must contain.
func wantCause(t *testing.T, r *Resolver, f *events.Failure, cause string, diagnosis, hint []string) {
	t.Helper()
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	if f.Cause != cause {
		t.Fatalf("cause %q, want %q\ndiagnosis: %s\nholders: %+v", f.Cause, cause, f.Diagnosis, f.Holders)
	}
	for _, w := range diagnosis {
		if !strings.Contains(f.Diagnosis, w) {
			t.Errorf("diagnosis %q\n lacks %q", f.Diagnosis, w)
		}
	}
	for _, w := range hint {
		if !strings.Contains(f.Hint, w) {
			t.Errorf("hint %q\n lacks %q", f.Hint, w)
		}
	}
}

// bindOK binds a fresh socket of this process, which must succeed.
func bindOK(t *testing.T, proto, addr string, port int, opts testenv.Opts, why string) {
	t.Helper()
	fd, err := testenv.Socket(proto, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := testenv.Bind(fd, addr, port); err != nil {
		t.Fatalf("%s: bind %s %s:%d = %v, want success", why, proto, addr, port, err)
	}
}

// A client's connect() takes the server's port from the ephemeral range:
// in a namespace of its own whose range is that one port, so the kernel
// has no other choice.
func TestCauseEphemeralPort(t *testing.T) {
	r := newTestResolver(t, Options{})
	name, nsIno := testenv.NewNetns(t)
	const port, service = 40123, 5000
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", port, port))
	inNS := testenv.InNetns(name)
	testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", service), inNS...)
	client := testenv.StartHelper(t, fmt.Sprintf("connect 127.0.0.1 %d", service), inNS...)
	if client.Line[0] != "ready" {
		t.Fatalf("client: %q, want it connected", client.Line)
	}

	// The hint says SO_REUSEADDR on the new socket does not help: the
	// connection's socket does not set it.
	var tryPID int
	for _, opts := range []string{"", "reuseaddr"} {
		try := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 0.0.0.0 %d %s", port, opts), inNS...)
		if try.Line[0] != "errno" || try.Line[1] != strconv.Itoa(int(unix.EADDRINUSE)) {
			t.Fatalf("server bind (%s) beside the client's connection: %q, want EADDRINUSE", opts, try.Line)
		}
		tryPID, _ = strconv.Atoi(try.Line[2])
	}
	f := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: port,
		Socket: events.Socket{ReuseAddr: true}, Process: events.Process{PID: tryPID, Netns: nsIno}}
	wantCause(t, r, f, events.CauseEphemeralPort,
		[]string{fmt.Sprintf("is taken by an outgoing connection from 127.0.0.1:%d to 127.0.0.1:%d (ESTABLISHED) of", port, service),
			fmt.Sprintf("pid %d", client.PID), fmt.Sprintf(", net.ipv4.ip_local_port_range %d, and is not in net.ipv4.ip_local_reserved_ports", port), fmt.Sprintf("network namespace (%d)", nsIno)},
		[]string{fmt.Sprintf("`nsenter --net=/proc/%d/ns/net sysctl -w net.ipv4.ip_local_reserved_ports=%d`", tryPID, port),
			"SO_REUSEADDR on this socket does not help"})
	h := findHolder(f.Holders, "ESTABLISHED")
	if h == nil || h.PeerAddr != "127.0.0.1" || h.PeerPort != service {
		t.Errorf("holders %+v, want the connection with its peer 127.0.0.1:%d", f.Holders, service)
	}

	// Do what the hint says: reserve the port. The next client cannot
	// take it (the range has no other port), and a reserved port is no
	// ephemeral collision any more.
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_reserved_ports", strconv.Itoa(port))
	next := testenv.StartHelper(t, fmt.Sprintf("connect 127.0.0.1 %d", service), inNS...)
	if next.Line[0] != "errno" || next.Line[1] != strconv.Itoa(int(unix.EADDRNOTAVAIL)) {
		t.Fatalf("a client after reserving the port: %q, want connect() refused with EADDRNOTAVAIL", next.Line)
	}
	f2 := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: port,
		Process: events.Process{PID: tryPID, Netns: nsIno}}
	if err := r.Resolve(f2); err != nil {
		t.Fatal(err)
	}
	if f2.Cause == events.CauseEphemeralPort {
		t.Errorf("a reserved port diagnosed as an ephemeral collision: %s", f2.Diagnosis)
	}
}

// A connected UDP socket takes its local port from the same range.
func TestCauseEphemeralPortUDP(t *testing.T) {
	r := newTestResolver(t, Options{})
	name, nsIno := testenv.NewNetns(t)
	const port, service = 40123, 53
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", port, port))
	inNS := testenv.InNetns(name)
	if c := testenv.StartHelper(t, fmt.Sprintf("connect 127.0.0.1 %d udp", service), inNS...); c.Line[0] != "ready" {
		t.Fatalf("UDP client: %q, want it connected", c.Line)
	}
	try := testenv.StartHelper(t, fmt.Sprintf("trybind udp 0.0.0.0 %d", port), inNS...)
	if try.Line[0] != "errno" || try.Line[1] != strconv.Itoa(int(unix.EADDRINUSE)) {
		t.Fatalf("server bind beside the client's socket: %q, want EADDRINUSE", try.Line)
	}
	tryPID, _ := strconv.Atoi(try.Line[2])
	f := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "udp", Family: "ipv4", Addr: "0.0.0.0", Port: port,
		Process: events.Process{PID: tryPID, Netns: nsIno}}
	wantCause(t, r, f, events.CauseEphemeralPort,
		[]string{fmt.Sprintf("Port %d/udp is taken by an outgoing connection from 127.0.0.1:%d to 127.0.0.1:%d", port, port, service)},
		[]string{"net.ipv4.ip_local_reserved_ports=40123"})
}

// A process that binds one port twice holds it itself.
func TestCauseSelfConflict(t *testing.T) {
	r := newTestResolver(t, Options{})
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			port := testenv.FreePort(t)
			fd := testenv.Hold(t, proto, "127.0.0.1", port, testenv.Opts{})
			f := failure(t, proto, "127.0.0.1", port, testenv.Opts{}, unix.EADDRINUSE)
			comm, _ := os.ReadFile("/proc/self/comm")
			wantCause(t, r, f, events.CauseSelfConflict,
				[]string{fmt.Sprintf("held by this same process, %s (pid %d)", strings.TrimSpace(string(comm)), os.Getpid()), fmt.Sprintf("(its fd %d): it binds the port twice", fd)},
				[]string{"Bind the port once"})
			if f.Holders[0].FD == nil || *f.Holders[0].FD != fd {
				t.Errorf("holder fd = %v, want %d", f.Holders[0].FD, fd)
			}
		})
	}
}

// Programs that hold ports for others are named for what they are.
func TestCauseManagers(t *testing.T) {
	r := newTestResolver(t, Options{})
	t.Run("docker-proxy", func(t *testing.T) {
		port := testenv.FreePort(t)
		h := testenv.StartHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d comm=docker-proxy", port))
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseDockerProxy,
			[]string{fmt.Sprintf("held by docker-proxy (pid %d", h.PID), "Docker publishes a container's port on it"},
			[]string{fmt.Sprintf("docker ps --filter publish=%d", port), fmt.Sprintf("kill %d", h.PID)})
	})
	t.Run("systemd as pid 1 of a pid namespace", func(t *testing.T) {
		testenv.Require(t, "unshare", "a pid namespace of its own (util-linux)")
		port := testenv.FreePort(t)
		h := testenv.StartHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d comm=systemd", port), "unshare", "--pid", "--fork", "--kill-child")
		if h.PID != 1 {
			t.Fatalf("helper says it is pid %d in its namespace, want 1", h.PID)
		}
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseSocketActivation,
			[]string{"held by systemd (pid", "the service manager of a container (pid 1 in its own pid namespace) listens on it for a socket unit"},
			[]string{"list-sockets | grep " + strconv.Itoa(port), "stop NAME.socket"})
		if p := f.Holders[0].Processes[0]; p.NSPID != 1 || p.PID == 1 {
			t.Errorf("holder process %+v, want ns_pid 1 and its host pid", p)
		}
	})
	t.Run("a root process named systemd that is not pid 1 is just a program", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d comm=systemd", port))
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
		wantCause(t, r, f, events.CausePortInUse, []string{"held by systemd"}, nil)
	})
}

// SO_REUSEPORT on one side only, or on both under different users: the
// diagnosis says which side lacks what, and doing what the hint says
// lets the bind succeed.
func TestCauseReusePort(t *testing.T) {
	r := newTestResolver(t, Options{})
	reuse := testenv.Opts{ReusePort: true}
	t.Run("this socket lacks it", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseport", port))
		f := failure(t, "tcp", "127.0.0.1", port, testenv.Opts{}, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseReusePortMissing, []string{"with SO_REUSEPORT, but this socket did not set SO_REUSEPORT", "this one lacks it"},
			[]string{"Set SO_REUSEPORT on this socket"})
		bindOK(t, "tcp", "127.0.0.1", port, reuse, "SO_REUSEPORT on this socket too (same user)")
	})
	t.Run("the holder lacks it", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", port))
		f := failure(t, "tcp", "127.0.0.1", port, reuse, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseReusePortMissing, []string{"without SO_REUSEPORT; this socket set SO_REUSEPORT", "the holder lacks it"},
			[]string{"Set SO_REUSEPORT on the holder's socket"})
	})
	t.Run("different users", func(t *testing.T) {
		const nobody = 65534
		port := testenv.FreePort(t)
		holder := startAsUser(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseport", port), nobody)
		if holder[0] != "ready" {
			t.Fatalf("holder as uid %d: %q", nobody, holder)
		}
		f := failure(t, "tcp", "127.0.0.1", port, reuse, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseReusePortUser,
			[]string{fmt.Sprintf("same effective uid: the holder's is %d, this process's 0", nobody)},
			[]string{"same user"})
		// The hint: the same user may share it.
		same := startAsUser(t, fmt.Sprintf("trybind tcp 127.0.0.1 %d reuseport", port), nobody)
		if same[0] != "errno" || same[1] != "0" {
			t.Errorf("bind with SO_REUSEPORT as the holder's user: %q, want success (errno 0)", same)
		}
	})
}

// startAsUser runs a helper job as uid and returns its first line; the
// helper runs until the test ends.
func startAsUser(t *testing.T, job string, uid uint32) []string {
	t.Helper()
	cmd := testenv.HelperAsUser(t, job, uid)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper %q as uid %d said nothing: %v", job, uid, err)
	}
	return strings.Fields(line)
}

// A TCP socket bound but never listening holds the port; with
// SO_REUSEADDR on both sides, as the hint says, the bind succeeds.
func TestCauseBoundNotListening(t *testing.T) {
	r := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr nolisten", port))
	f := failure(t, "tcp", "127.0.0.1", port, testenv.Opts{}, unix.EADDRINUSE)
	wantCause(t, r, f, events.CauseBoundNotListening,
		[]string{"bound, not listening, to 127.0.0.1", "not a listener", "this one: off, the holder: on"},
		[]string{"Set SO_REUSEADDR on both sockets"})
	bindOK(t, "tcp", "127.0.0.1", port, testenv.Opts{ReuseAddr: true}, "SO_REUSEADDR on both sockets")
}

// Wildcard against specific address, and listen() on a port shared by
// SO_REUSEADDR binds: the hints' claims, checked.
func TestCauseOverlapAndListenHints(t *testing.T) {
	r := newTestResolver(t, Options{})
	t.Run("tcp: SO_REUSEADDR does not help, SO_REUSEPORT on both does", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr", port))
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{ReuseAddr: true}, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseAddressOverlap, []string{"the wildcard address covers every address"},
			[]string{"whatever SO_REUSEADDR says", "SO_REUSEPORT on both sockets (same user)"})
		port2 := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseport", port2))
		bindOK(t, "tcp", "0.0.0.0", port2, testenv.Opts{ReusePort: true}, "SO_REUSEPORT on both sockets")
	})
	t.Run("udp: SO_REUSEADDR on both", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold udp 0.0.0.0 %d", port))
		f := failure(t, "udp", "127.0.0.1", port, testenv.Opts{}, unix.EADDRINUSE)
		wantCause(t, r, f, events.CauseAddressOverlap, []string{"the holder's wildcard address covers every address"},
			[]string{"Set SO_REUSEADDR on both sockets (UDP"})
		port2 := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold udp 0.0.0.0 %d reuseaddr", port2))
		bindOK(t, "udp", "127.0.0.1", port2, testenv.Opts{ReuseAddr: true}, "SO_REUSEADDR on both UDP sockets")
	})
	t.Run("listen: SO_REUSEPORT on every listener", func(t *testing.T) {
		for _, reusePort := range []bool{false, true} {
			port := testenv.FreePort(t)
			job := fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr nolisten", port)
			if reusePort {
				job += " reuseport"
			}
			h := testenv.StartHelper(t, job)
			opts := testenv.Opts{ReuseAddr: true, ReusePort: reusePort}
			fd, err := testenv.Socket("tcp", "127.0.0.1", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := testenv.Bind(fd, "127.0.0.1", port); err != nil {
				t.Fatalf("bind beside a bound socket, both SO_REUSEADDR: %v", err)
			}
			if answer, err := h.Say("listen"); err != nil || answer != "listening" {
				t.Fatalf("holder listen: %q, %v", answer, err)
			}
			err = unix.Listen(fd, 1)
			if reusePort {
				if err != nil {
					t.Errorf("listen with SO_REUSEPORT on both listeners (the hint): %v, want success", err)
				}
				continue
			}
			if err != unix.EADDRINUSE {
				t.Fatalf("second listen: %v, want EADDRINUSE", err)
			}
			f := &events.Failure{Syscall: "listen", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "127.0.0.1", Port: uint16(port),
				Socket: events.Socket{ReuseAddr: true}, Process: events.Process{PID: os.Getpid(), Netns: testenv.Netns(t)}}
			wantCause(t, r, f, events.CauseListenConflict, []string{fmt.Sprintf("(pid %d", h.PID), "only until one of them listens"},
				[]string{"set SO_REUSEPORT on every listening socket (same user)"})
		}
	})
}
