// Package smoke is vmtest's self-check: run in a guest (go run
// ./internal/vmtest -pkgs ./internal/vmtest/testdata/smoke), it proves the
// guest gives bindwatch's integration tests what they rely on. It lives under
// testdata so that `go test ./...` on the host leaves it alone.
package smoke

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestKernelBTF(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Fatalf("kernel BTF: %v (the kernel needs CONFIG_DEBUG_INFO_BTF=y)", err)
	}
}

func TestCgroup2(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		t.Fatalf("cgroup2 at /sys/fs/cgroup: %v (guest init mounts it)", err)
	}
}

func TestBackendEnv(t *testing.T) {
	switch backend := os.Getenv("BINDWATCH_TEST_BACKEND"); backend {
	case "fentry", "kprobe", "tracepoint":
	default:
		t.Fatalf("BINDWATCH_TEST_BACKEND=%q, want fentry, kprobe or tracepoint", backend)
	}
	if got := os.Getenv("BINDWATCH_REQUIRE_BPF"); got != "1" {
		t.Fatalf("BINDWATCH_REQUIRE_BPF=%q, want 1", got)
	}
}

// TestBindConflict binds on loopback, v4 and v6, and checks that a second
// bind of the same address fails the way bindwatch expects to observe.
func TestBindConflict(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen %s: %v (is lo up?)", addr, err)
			}
			defer ln.Close()
			second, err := net.Listen("tcp", ln.Addr().String())
			if err == nil {
				second.Close()
				t.Fatalf("second listen on %s succeeded, want EADDRINUSE", ln.Addr())
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("second listen on %s: %v, want EADDRINUSE", ln.Addr(), err)
			}
		})
	}
}

func TestShell(t *testing.T) {
	if out, err := exec.Command("sh", "-c", "echo ok").CombinedOutput(); err != nil || string(out) != "ok\n" {
		t.Fatalf("sh -c 'echo ok' = %q, %v (the initramfs carries busybox)", out, err)
	}
}

// TestSockDiag finds a TCP listener and a bound UDP socket through inet
// sock_diag, which bindwatch uses to name holders: the guest init loads
// its modules.
func TestSockDiag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for proto, port := range map[uint8]int{syscall.IPPROTO_TCP: ln.Addr().(*net.TCPAddr).Port, syscall.IPPROTO_UDP: pc.LocalAddr().(*net.UDPAddr).Port} {
		ports, err := diagPorts(proto)
		if err != nil {
			t.Fatalf("sock_diag, protocol %d: %v (are inet_diag, tcp_diag and udp_diag loaded?)", proto, err)
		}
		if !ports[port] {
			t.Errorf("sock_diag, protocol %d: port %d not among %v", proto, port, ports)
		}
	}
}

// diagPorts dumps the local ports of the IPv4 sockets of protocol, in any
// state, with a SOCK_DIAG_BY_FAMILY request.
func diagPorts(proto uint8) (map[int]bool, error) {
	const netlinkSockDiag, sockDiagByFamily = 4, 20
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, netlinkSockDiag)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	// nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states, sockid.
	req := make([]byte, 16+56)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	req[16], req[17] = syscall.AF_INET, proto
	binary.NativeEndian.PutUint32(req[20:], ^uint32(0))
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return nil, err
	}
	ports := map[int]bool{}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return ports, nil
			case syscall.NLMSG_ERROR:
				return nil, syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
			}
			// inet_diag_msg: family, state, timer, retrans, then sport (big endian).
			ports[int(binary.BigEndian.Uint16(m.Data[4:]))] = true
		}
	}
}
