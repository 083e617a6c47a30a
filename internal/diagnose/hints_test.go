package diagnose

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The diagnosis tells users what lets a bind succeed and what does not.
// Each such claim is done here for real, in a network namespace of the
// test's own (its ports and sysctls touch nothing else), and the bind's
// outcome checked: the kernel, not the table, is the reference.

// socketAs makes a socket owned by uid: the kernel records the creating
// thread's fsuid as the socket's owner (sock_i_uid), the uid SO_REUSEPORT
// compares. The caller's thread must be locked (InPrivateNetns): setfsuid
// is per thread.
func socketAs(t *testing.T, uid uint32, proto, addr string, opts testenv.Opts) int {
	t.Helper()
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(uid), 0, 0)
	fd, err := testenv.Socket(proto, addr, opts)
	unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Uid != uid {
		t.Fatalf("socket owner %d (%v), want %d", st.Uid, err, uid)
	}
	return fd
}

// TestReuseAllowsMatchesKernel makes each row of reuseAllows's truth table
// real — the holder in its state, owned by its uid, with its options —
// binds the new socket, and checks the kernel agrees with the table.
func TestReuseAllowsMatchesKernel(t *testing.T) {
	ns := testenv.PrivateNetns(t)
	for i, c := range reuseCases {
		t.Run(c.name, func(t *testing.T) {
			port := 20000 + i
			testenv.InPrivateNetns(t, ns, func() {
				on := func(b *bool) bool { return b != nil && *b }
				held := testenv.Opts{ReuseAddr: on(c.held.ReuseAddr), ReusePort: on(c.held.ReusePort)}
				switch c.held.State {
				case "TIME_WAIT":
					if c.held.UID != 0 {
						t.Fatalf("a TIME_WAIT row with uid %d: this test makes TIME_WAIT as root", c.held.UID)
					}
					testenv.LeaveTimeWaitOpts(t, "127.0.0.1", port, held)
				default:
					fd := socketAs(t, c.held.UID, c.held.Proto, "127.0.0.1", held)
					if err := testenv.Bind(fd, "127.0.0.1", port); err != nil {
						t.Fatalf("bind the holder: %v", err)
					}
					if c.held.State == "LISTEN" {
						if err := unix.Listen(fd, 1); err != nil {
							t.Fatal(err)
						}
					}
				}
				fd := socketAs(t, c.want.uid, c.held.Proto, "127.0.0.1", testenv.Opts{ReuseAddr: c.want.reuseAddr, ReusePort: c.want.reusePort})
				err := testenv.Bind(fd, "127.0.0.1", port)
				if err != nil && err != unix.EADDRINUSE {
					t.Fatalf("bind = %v, want success or EADDRINUSE", err)
				}
				if kernel := err == nil; kernel != c.allow {
					t.Errorf("the kernel says bind allowed=%v (%v), the table %v", kernel, err, c.allow)
				}
			})
		})
	}
}

// tryBind binds a fresh socket and returns the error.
func tryBind(t *testing.T, proto, addr string, port int, opts testenv.Opts) error {
	t.Helper()
	fd, err := testenv.Socket(proto, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	return testenv.Bind(fd, addr, port)
}

// "net.ipv4.tcp_tw_reuse only applies to outgoing connect(), not to
// bind()": with it set, TIME_WAIT still refuses a bind, until both sockets
// set SO_REUSEADDR.
func TestTCPTWReuseDoesNotHelpBind(t *testing.T) {
	ns := testenv.PrivateNetns(t)
	testenv.InPrivateNetns(t, ns, func() {
		testenv.Sysctl(t, "net/ipv4/tcp_tw_reuse", "1")
		testenv.LeaveTimeWaitOpts(t, "127.0.0.1", 8080, testenv.Opts{ReuseAddr: true})
		if err := tryBind(t, "tcp", "127.0.0.1", 8080, testenv.Opts{}); err != unix.EADDRINUSE {
			t.Errorf("with tcp_tw_reuse=1, bind over TIME_WAIT = %v, want EADDRINUSE", err)
		}
		if err := tryBind(t, "tcp", "127.0.0.1", 8080, testenv.Opts{ReuseAddr: true}); err != nil {
			t.Errorf("both sockets with SO_REUSEADDR: bind over TIME_WAIT = %v, want success", err)
		}
	})
}

// "UDP sockets can share a port when all of them set SO_REUSEADDR": a
// wildcard and a specific address, both ways round; and "a wildcard and a
// specific address cannot both hold one TCP port with a listener, whatever
// SO_REUSEADDR says … share with SO_REUSEPORT on both sockets".
func TestWildcardAndSpecificSharing(t *testing.T) {
	ns := testenv.PrivateNetns(t)
	reuse, both := testenv.Opts{ReuseAddr: true}, testenv.Opts{ReusePort: true}
	for i, c := range []struct {
		name           string
		proto          string
		held, want     string
		heldOpts, opts testenv.Opts
		ok             bool
	}{
		{"udp wildcard then specific, SO_REUSEADDR on both", "udp", "0.0.0.0", "127.0.0.1", reuse, reuse, true},
		{"udp specific then wildcard, SO_REUSEADDR on both", "udp", "127.0.0.1", "0.0.0.0", reuse, reuse, true},
		{"udp SO_REUSEADDR on the new socket only", "udp", "0.0.0.0", "127.0.0.1", testenv.Opts{}, reuse, false},
		{"udp SO_REUSEADDR on the holder only", "udp", "0.0.0.0", "127.0.0.1", reuse, testenv.Opts{}, false},
		{"tcp listener on the wildcard, SO_REUSEADDR on both", "tcp", "0.0.0.0", "127.0.0.1", reuse, reuse, false},
		{"tcp listener on the wildcard, SO_REUSEPORT on both", "tcp", "0.0.0.0", "127.0.0.1", both, both, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := 21000 + i
			testenv.InPrivateNetns(t, ns, func() {
				testenv.Hold(t, c.proto, c.held, port, c.heldOpts)
				err := tryBind(t, c.proto, c.want, port, c.opts)
				if (err == nil) != c.ok || (err != nil && err != unix.EADDRINUSE) {
					t.Errorf("bind %s:%d next to %s = %v, want success=%v", c.want, port, c.held, err, c.ok)
				}
			})
		})
	}
}

// "set IP_FREEBIND on the socket (net.ipv4.ip_nonlocal_bind=1 for the
// whole namespace)": an address the host does not have can be bound with
// either, and not without.
func TestFreebindBindsNonLocalAddress(t *testing.T) {
	ns := testenv.PrivateNetns(t)
	testenv.InPrivateNetns(t, ns, func() {
		for _, addr := range []string{"203.0.113.7", "2001:db8::7"} {
			if err := tryBind(t, "tcp", addr, 8080, testenv.Opts{}); err != unix.EADDRNOTAVAIL {
				t.Errorf("bind %s = %v, want EADDRNOTAVAIL", addr, err)
			}
			if err := tryBind(t, "tcp", addr, 8080, testenv.Opts{FreeBind: true}); err != nil {
				t.Errorf("bind %s with IP_FREEBIND = %v, want success", addr, err)
			}
		}
		testenv.Sysctl(t, "net/ipv4/ip_nonlocal_bind", "1")
		testenv.Sysctl(t, "net/ipv6/ip_nonlocal_bind", "1")
		for _, addr := range []string{"203.0.113.7", "2001:db8::7"} {
			if err := tryBind(t, "tcp", addr, 8080, testenv.Opts{}); err != nil {
				t.Errorf("bind %s with ip_nonlocal_bind=1 = %v, want success", addr, err)
			}
		}
	})
}

// "assigned … but still tentative: IPv6 duplicate address detection has
// not finished, and bind() refuses such an address. Retry once DAD is done,
// set IP_FREEBIND on the socket, or disable DAD (accept_dad=0)": an
// address on one end of a veth pair is tentative for about a second.
func TestTentativeIPv6Address(t *testing.T) {
	ns := testenv.PrivateNetns(t)
	testenv.InPrivateNetns(t, ns, func() {
		if err := testenv.AddVethPair("bw0", "bw1"); err != nil {
			t.Fatal(err)
		}
		first, second := netip.MustParsePrefix("2001:db8::1/64"), netip.MustParsePrefix("2001:db8::2/64")
		if err := testenv.AddAddr("bw0", first); err != nil {
			t.Fatal(err)
		}
		if tentative, err := testenv.Tentative(first.Addr()); err != nil || !tentative {
			t.Fatalf("the new address is not tentative (%v)", err)
		}
		if err := tryBind(t, "tcp", "2001:db8::1", 8080, testenv.Opts{}); err != unix.EADDRNOTAVAIL {
			t.Errorf("bind a tentative address = %v, want EADDRNOTAVAIL", err)
		}
		if err := tryBind(t, "tcp", "2001:db8::1", 8080, testenv.Opts{FreeBind: true}); err != nil {
			t.Errorf("bind a tentative address with IP_FREEBIND = %v, want success", err)
		}
		dad := waitNotTentative(t, first.Addr())
		if err := tryBind(t, "tcp", "2001:db8::1", 8080, testenv.Opts{}); err != nil {
			t.Errorf("bind after DAD = %v, want success", err)
		}
		// accept_dad=0: no detection; the address is usable once the
		// kernel's address work has run, well before a DAD round.
		testenv.Sysctl(t, "net/ipv6/conf/bw0/accept_dad", "0")
		if err := testenv.AddAddr("bw0", second); err != nil {
			t.Fatal(err)
		}
		if noDAD := waitNotTentative(t, second.Addr()); noDAD > dad/2 {
			t.Errorf("with accept_dad=0 the address was tentative for %s, with DAD %s", noDAD, dad)
		}
		if err := tryBind(t, "tcp", "2001:db8::2", 8080, testenv.Opts{}); err != nil {
			t.Errorf("bind with accept_dad=0 = %v, want success", err)
		}
	})
}

// waitNotTentative waits up to 10 s for addr to stop being tentative and
// returns how long that took.
func waitNotTentative(t *testing.T, addr netip.Addr) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		tentative, err := testenv.Tentative(addr)
		if err != nil {
			t.Fatal(err)
		}
		if !tentative {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s is still tentative after 10s", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
