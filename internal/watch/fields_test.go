package watch

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// Every socket option bindwatch captures is tested set, not only unset: a
// misread of the moved inet flags (6.6) would otherwise pass. Each failure
// is EADDRINUSE against a plain holder on the same address.
func TestCapturedSocketOptions(t *testing.T) {
	// The interface with the highest index (lo, index 1, on a bare VM): a
	// device captured by index must not be confused with lo's 1 where
	// another exists.
	ifaces, err := net.Interfaces()
	if err != nil || len(ifaces) == 0 {
		t.Fatalf("list interfaces: %v", err)
	}
	dev := slices.MaxFunc(ifaces, func(a, b net.Interface) int { return a.Index - b.Index })
	type want struct {
		reuseAddr, reusePort, freebind bool
		v6only                         *bool
		dev                            string
		devIndex                       int
	}
	for _, c := range []struct {
		name  string
		proto string
		addr  string
		opts  testenv.Opts
		want  want
	}{
		{"none", "tcp", "127.0.0.1", testenv.Opts{}, want{}},
		{"SO_REUSEADDR", "tcp", "127.0.0.1", testenv.Opts{ReuseAddr: true}, want{reuseAddr: true}},
		{"SO_REUSEPORT", "udp", "127.0.0.1", testenv.Opts{ReusePort: true}, want{reusePort: true}},
		{"SO_REUSEADDR and SO_REUSEPORT", "tcp", "127.0.0.1", testenv.Opts{ReuseAddr: true, ReusePort: true}, want{reuseAddr: true, reusePort: true}},
		{"IPV6_V6ONLY on", "tcp", "::1", testenv.Opts{V6Only: &on}, want{v6only: &on}},
		{"IPV6_V6ONLY off", "udp", "::1", testenv.Opts{V6Only: &off}, want{v6only: &off}},
		{"IP_FREEBIND", "tcp", "127.0.0.1", testenv.Opts{FreeBind: true}, want{freebind: true}},
		{"IPV6_FREEBIND", "udp", "::1", testenv.Opts{FreeBind: true, V6Only: &off}, want{freebind: true, v6only: &off}},
		{"SO_BINDTODEVICE lo", "tcp", "127.0.0.1", testenv.Opts{Device: "lo"}, want{dev: "lo", devIndex: 1}},
		{"SO_BINDTOIFINDEX " + dev.Name, "udp", "127.0.0.1", testenv.Opts{Ifindex: dev.Index}, want{dev: dev.Name, devIndex: dev.Index}},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			s := startSession(t, onlyPort(port))
			testenv.Hold(t, c.proto, c.addr, port, testenv.Opts{})
			testenv.FailBind(t, c.proto, c.addr, port, c.opts, syscall.EADDRINUSE)
			f := s.waitFailure(port)
			got := want{f.Socket.ReuseAddr, f.Socket.ReusePort, f.Socket.Freebind, f.Socket.V6Only, f.Socket.BoundDev, f.Socket.BoundDevIndex}
			if got.reuseAddr != c.want.reuseAddr || got.reusePort != c.want.reusePort || got.freebind != c.want.freebind ||
				ptrString(got.v6only) != ptrString(c.want.v6only) || got.dev != c.want.dev || got.devIndex != c.want.devIndex {
				t.Errorf("socket %+v (v6only %s), want reuseaddr=%v reuseport=%v freebind=%v v6only=%s dev=%q index %d",
					f.Socket, ptrString(got.v6only), c.want.reuseAddr, c.want.reusePort, c.want.freebind, ptrString(c.want.v6only), c.want.dev, c.want.devIndex)
			}
			checkSelf(t, f)
		})
	}
}

// A socket bound to a device in another network namespace: the index is
// captured, but not named (indexes are per namespace, and only ours is
// looked up).
func TestCapturedDeviceInOtherNetns(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	// An address the new namespace does not have: EADDRNOTAVAIL, with no
	// port to hold. (IPv6: in a new namespace whose lo is down, binding a
	// foreign IPv4 address to lo succeeds — seen on 6.18.)
	cmd := testenv.HelperInNetns("bind tcp 2001:db8::5 " + strconv.Itoa(port) + " ifindex=1")
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != int(syscall.EADDRNOTAVAIL) {
		t.Fatalf("helper exit %d, want EADDRNOTAVAIL", code)
	}
	f := s.waitFailure(port)
	if f.Socket.BoundDevIndex != 1 || f.Socket.BoundDev != "" || f.Process.PID != cmd.Process.Pid {
		t.Errorf("pid %d socket %+v, want pid %d with dev index 1 and no name", f.Process.PID, f.Socket, cmd.Process.Pid)
	}
}

// The failing process's identity, checked against what made it: uid and
// gid, CAP_NET_BIND_SERVICE held as an ambient capability by an
// unprivileged uid (true) or not (false), the cgroup it was started in
// (its id as the kernel's file handle of the directory), comm and the
// exact argv.
func TestCapturedProcess(t *testing.T) {
	testenv.RequireRoot(t)
	argv := []string{"two words", "ünïcode", "--flag=x", "last"}
	for _, c := range []struct {
		name string
		cap  bool
	}{{"ambient CAP_NET_BIND_SERVICE", true}, {"no capability", false}} {
		t.Run(c.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			s := startSession(t, onlyPort(port))
			testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
			cg := testenv.NewCgroup(t)
			// trybind stays until its stdin closes: alive while its
			// failure is read, however slow the machine, so that its
			// cgroup's path is still in /proc.
			cmd := testenv.HelperAsUser(t, "trybind tcp 127.0.0.1 "+strconv.Itoa(port), 65534)
			cmd.Args = append(cmd.Args, argv...)
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg.FD
			if c.cap {
				cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_NET_BIND_SERVICE}
			}
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if want := fmt.Sprintf("errno %d %d\n", syscall.EADDRINUSE, cmd.Process.Pid); line != want {
				t.Fatalf("helper said %q, want %q", line, want)
			}
			p := s.waitFailure(port).Process
			if p.PID != cmd.Process.Pid || p.PPID != os.Getpid() || p.UID != 65534 || p.GID == nil || *p.GID != 65534 {
				t.Errorf("pid %d ppid %d uid %d gid %v, want %d %d 65534 65534", p.PID, p.PPID, p.UID, p.GID, cmd.Process.Pid, os.Getpid())
			}
			if p.CapNetBindService == nil || *p.CapNetBindService != c.cap {
				t.Errorf("cap_net_bind_service = %s, want %v", ptrString(p.CapNetBindService), c.cap)
			}
			// The id is the kernel's; the path is looked up in /proc.
			if p.CgroupID != cg.ID || p.Cgroup != cg.Path {
				t.Errorf("cgroup %q id %d, want %q id %d", p.Cgroup, p.CgroupID, cg.Path, cg.ID)
			}
			if comm := filepath.Base(cmd.Path); p.Comm != comm[:min(len(comm), 15)] {
				t.Errorf("comm %q, want %q", p.Comm, comm[:min(len(comm), 15)])
			}
			if !slices.Equal(p.Cmdline, cmd.Args) {
				t.Errorf("cmdline %q, want exactly %q", p.Cmdline, cmd.Args)
			}
		})
	}
}
