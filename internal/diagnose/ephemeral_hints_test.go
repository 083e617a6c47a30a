package diagnose

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// Ephemeral port exhaustion (issue 22): what lets a connect() succeed once
// the namespace's range is used up toward one destination. Each claim the
// ephemeral_exhausted hint will make is done here for real, in a network
// namespace of the test's own with a 4-port range, and the connect()'s
// outcome checked: the kernel, not the hint, is the reference.

const (
	exhaustLo, exhaustHi = 40000, 40003 // 4 usable local ports
	exhaustDstPort       = 9000         // outside the range
)

// tcpConnect makes a TCP socket, optionally binds it to src with
// IP_BIND_ADDRESS_NO_PORT (the kernel then picks the port at connect(),
// per 4-tuple), and connects it to 127.0.0.1:port.
func tcpConnect(t *testing.T, src string, port int) (int, error) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if src != "" {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			t.Fatal(err)
		}
		if err := testenv.Bind(fd, src, 0); err != nil {
			t.Fatalf("bind %s:0: %v", src, err)
		}
	}
	return fd, unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}

// tcpListen listens on 127.0.0.1:port.
func tcpListen(t *testing.T, port int) int {
	t.Helper()
	fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := testenv.Bind(fd, "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		t.Fatal(err)
	}
	return fd
}

// exhaust uses up the 4-port range toward 127.0.0.1:exhaustDstPort with 4
// established connections (tcp_tw_reuse off), checks that a fifth connect()
// fails with EADDRNOTAVAIL, and returns the listener and the clients.
func exhaust(t *testing.T) (ln int, clients []int) {
	t.Helper()
	testenv.Sysctl(t, "net/ipv4/ip_local_port_range", "40000 40003")
	testenv.Sysctl(t, "net/ipv4/tcp_tw_reuse", "0")
	ln = tcpListen(t, exhaustDstPort)
	for i := 0; i < exhaustHi-exhaustLo+1; i++ {
		fd, err := tcpConnect(t, "", exhaustDstPort)
		if err != nil {
			t.Fatalf("connection %d of 4: %v", i+1, err)
		}
		clients = append(clients, fd)
	}
	if _, err := tcpConnect(t, "", exhaustDstPort); !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("fifth connect() with a 4-port range: %v, want EADDRNOTAVAIL", err)
	}
	return ln, clients
}

func TestEphemeralExhaustedHints(t *testing.T) {
	// Widen by an even number of ports (the ends of different parity, as
	// the kernel's ip-sysctl documentation advises): connect() scans
	// (hi-lo+1) rounded down to even ports from a random offset
	// (__inet_hash_connect: remaining &= ~1), so with an odd count one
	// port is out of its reach at each attempt — which one varies, so
	// that half is not asserted here.
	t.Run("widen the range", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			exhaust(t)
			testenv.Sysctl(t, "net/ipv4/ip_local_port_range", "40000 40005")
			if _, err := tcpConnect(t, "", exhaustDstPort); err != nil {
				t.Errorf("connect() with the range widened by two ports (40000 40005): %v, want success", err)
			}
		})
	})
	t.Run("ports are per destination", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			exhaust(t)
			tcpListen(t, exhaustDstPort+1)
			if _, err := tcpConnect(t, "", exhaustDstPort+1); err != nil {
				t.Errorf("connect() to another port of the same host: %v, want success (the range is used up per destination)", err)
			}
		})
	})
	t.Run("a second source address", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			exhaust(t)
			if _, err := tcpConnect(t, "127.0.0.2", exhaustDstPort); err != nil {
				t.Errorf("connect() from 127.0.0.2 (IP_BIND_ADDRESS_NO_PORT): %v, want success", err)
			}
		})
	})
	t.Run("close idle connections", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			_, clients := exhaust(t)
			// The server end stays open: the client's close leaves its
			// port in FIN_WAIT_2, not free; closing it with an RST
			// (SO_LINGER 0) frees it at once.
			if err := unix.SetsockoptLinger(clients[0], unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
				t.Fatal(err)
			}
			unix.Close(clients[0])
			if _, err := tcpConnect(t, "", exhaustDstPort); err != nil {
				t.Errorf("connect() after closing one connection (RST): %v, want success", err)
			}
		})
	})
	t.Run("tcp_tw_reuse for TIME_WAIT", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			ln, clients := exhaust(t)
			// The clients close first: their ports go to TIME_WAIT once
			// the server closes its ends too.
			for _, fd := range clients {
				unix.Close(fd)
			}
			for range clients {
				fd, _, err := unix.Accept(ln)
				if err != nil {
					t.Fatal(err)
				}
				unix.Close(fd)
			}
			time.Sleep(100 * time.Millisecond)
			if _, err := tcpConnect(t, "", exhaustDstPort); !errors.Is(err, unix.EADDRNOTAVAIL) {
				t.Fatalf("connect() with the 4 ports in TIME_WAIT, tcp_tw_reuse=0: %v, want EADDRNOTAVAIL", err)
			}
			testenv.Sysctl(t, "net/ipv4/tcp_tw_reuse", "1")
			// The kernel reuses a TIME_WAIT port only once its last
			// timestamp is over a second old (tcp_tw_reuse_delay):
			// poll, with no bound on how fast it must happen.
			deadline := time.Now().Add(testenv.StartTimeout)
			var err error
			for {
				if _, err = tcpConnect(t, "", exhaustDstPort); err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("connect() with tcp_tw_reuse=1, ports in TIME_WAIT: %v, want success", err)
			}
		})
	})
}

// udpConnect connects a fresh UDP socket to 127.0.0.1:port: its autobind
// takes a port of the range.
func udpConnect(t *testing.T, port int) (int, error) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}

// exhaustUDP uses up the 4-port range with 4 UDP sockets and checks that
// a fifth UDP connect() fails with EAGAIN (inet_autobind).
func exhaustUDP(t *testing.T) (socks []int) {
	t.Helper()
	testenv.Sysctl(t, "net/ipv4/ip_local_port_range", "40000 40003")
	for i := 0; i < exhaustHi-exhaustLo+1; i++ {
		fd, err := udpConnect(t, exhaustDstPort)
		if err != nil {
			t.Fatalf("UDP socket %d of 4: %v", i+1, err)
		}
		socks = append(socks, fd)
	}
	if _, err := udpConnect(t, exhaustDstPort); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("fifth UDP connect() with a 4-port range: %v, want EAGAIN", err)
	}
	return socks
}

// The UDP side of the ephemeral_exhausted hint: UDP's autobind needs a
// port no socket has, so widening the range or closing a socket lets
// connect() (and sendto()) succeed, whatever the destination.
func TestEphemeralExhaustedUDPHints(t *testing.T) {
	t.Run("widen the range", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			exhaustUDP(t)
			testenv.Sysctl(t, "net/ipv4/ip_local_port_range", "40000 40005")
			if _, err := udpConnect(t, exhaustDstPort); err != nil {
				t.Errorf("UDP connect() with the range widened by two ports: %v, want success", err)
			}
		})
	})
	t.Run("close unused sockets", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			socks := exhaustUDP(t)
			unix.Close(socks[0])
			if _, err := udpConnect(t, exhaustDstPort); err != nil {
				t.Errorf("UDP connect() after closing one socket: %v, want success", err)
			}
		})
	})
	t.Run("not per destination", func(t *testing.T) {
		testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
			exhaustUDP(t)
			if _, err := udpConnect(t, exhaustDstPort+1); !errors.Is(err, unix.EAGAIN) {
				t.Errorf("UDP connect() to another port: %v, want EAGAIN (a UDP socket takes its port for every destination)", err)
			}
		})
	})
}
