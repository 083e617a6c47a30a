package resolve

import (
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestOneDumpListsBothFamilies: the one TCP dump of both families (the
// compat request, family AF_UNSPEC) lists exactly the sockets the two
// per-family dumps list, in every state who reports: listeners,
// connections and TIME_WAIT of IPv4 and IPv6, and (6.8+) a bound-only
// socket. Real sockets, in a private network namespace.
func TestOneDumpListsBothFamilies(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.PrivateNetns(t)
	const port = 18080
	testenv.InPrivateNetns(t, ns, func() {
		v6only := true
		for _, addr := range []string{"127.0.0.1", "::1"} {
			ln := testenv.Hold(t, "tcp", addr, port, testenv.Opts{V6Only: &v6only})
			// A connection kept open: the accepted side has the port.
			cl, err := testenv.Socket("tcp", addr, testenv.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(cl) })
			sa := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}
			var to unix.Sockaddr = sa
			if addr == "::1" {
				to = &unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: port}
			}
			if err := unix.Connect(cl, to); err != nil {
				t.Fatalf("connect %s:%d: %v", addr, port, err)
			}
			srv, _, err := unix.Accept(ln)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(srv) })
		}
		testenv.LeaveTimeWait(t, "127.0.0.2", port, false)
		bound, err := testenv.Socket("tcp", "127.0.0.3", testenv.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(bound) })
		if err := testenv.Bind(bound, "127.0.0.3", port); err != nil {
			t.Fatal(err)
		}

		fd, err := openSockDiag()
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		render := func(socks []diagSocket) []string {
			var out []string
			for _, s := range socks {
				// TIME_WAIT's time left moves between the dumps.
				out = append(out, fmt.Sprintf("%d %s %s:%d %s:%d inode %d uid %d v6only %v", s.family, stateName("tcp", s.state),
					s.src, s.sport, s.dst, s.dport, s.inode, s.uid, s.v6only != nil && *s.v6only))
			}
			slices.Sort(out)
			return out
		}
		// The filters of who (one port), of the incident poll (a list, or
		// past maxListedPorts a range) and of an ephemeral-port failure
		// (a range).
		var one []diagSocket
		for _, bc := range [][]byte{portFilter(port), portsFilter([]uint16{port - 1, port}), rangeFilter(port-1, port+1)} {
			got, err := dumpFiltered(fd, unix.AF_UNSPEC, "tcp", bc, "test")
			if err != nil {
				t.Fatalf("one dump of both families: %v", err)
			}
			var each []diagSocket
			for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
				socks, err := dumpFiltered(fd, family, "tcp", bc, "test")
				if err != nil {
					t.Fatal(err)
				}
				each = append(each, socks...)
			}
			if g, w := render(got), render(each); !slices.Equal(g, w) {
				t.Errorf("filter %x: one dump of both families:\n %q\nper family:\n %q", bc, g, w)
			}
			one = got
		}
		got := render(one)
		states := map[string]int{}
		for _, s := range one {
			states[fmt.Sprintf("%d %s", s.family, stateName("tcp", s.state))]++
		}
		for _, w := range []string{"2 LISTEN", "10 LISTEN", "2 ESTABLISHED", "10 ESTABLISHED", "2 TIME_WAIT"} {
			if states[w] == 0 {
				t.Errorf("no %s socket (family, state) in the one dump: %q", w, got)
			}
		}
		if host.ReleaseAtLeast(6, 8) && states["2 BOUND"] == 0 {
			t.Errorf("no bound-only socket in the one dump (6.8+ lists them): %q", got)
		}
	})
}

// TestEarlyProcScanFindsLateSockets: the /proc scan a one-shot lookup
// starts beside the sock_diag dump may read a process's fds before a
// socket the dump lists is open there. Such a socket is looked for again,
// not reported as held by no process.
func TestEarlyProcScanFindsLateSockets(t *testing.T) {
	testenv.RequireRoot(t)
	early := testenv.Hold(t, "tcp", "127.0.0.1", 0, testenv.Opts{})
	// The scan startProcScan makes on a small host (the fd count it
	// starts with needs 6.2; the scan itself, every kernel).
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range procs {
		names = append(names, p.Name())
	}
	ps := &procScan{done: make(chan struct{}), small: true}
	ps.socks, ps.complete = scanFDs(names, func(uint32) bool { return true })
	close(ps.done)
	late := testenv.Hold(t, "tcp", "127.0.0.1", 0, testenv.Opts{})
	inode := func(fd int) uint32 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		return uint32(st.Ino)
	}
	if ps.socks[inode(late)] != nil {
		t.Fatal("the early scan saw a socket opened after it: the test proves nothing")
	}
	owners, complete := ps.owners([]uint32{inode(early), inode(late)})
	if !complete {
		t.Fatal("the scan could not read every fd table (as root)")
	}
	for _, fd := range []int{early, late} {
		o := owners[inode(fd)]
		if o == nil || !slices.Equal(o.pids, []int{os.Getpid()}) || o.fdPID != os.Getpid() || o.fd != fd {
			t.Errorf("socket fd %d: owners %+v, want this process (%d) by fd %d", fd, o, os.Getpid(), fd)
		}
	}
}

// TestSocketLinkInode: the /proc scan's parse of an fd link's target.
func TestSocketLinkInode(t *testing.T) {
	for target, want := range map[string]int64{
		"socket:[12345]": 12345, "socket:[4294967295]": 4294967295,
		"socket:[4294967296]": -1, "socket:[]": -1, "socket:[12a]": -1,
		"pipe:[12345]": -1, "/dev/null": -1, "anon_inode:[eventpoll]": -1,
	} {
		ino, ok := socketLinkInode([]byte(target))
		if got := int64(ino); !ok {
			got = -1
		} else if got != want {
			t.Errorf("%q: inode %d, want %d", target, got, want)
		}
		if ok != (want >= 0) {
			t.Errorf("%q: ok %v, want %v", target, ok, want >= 0)
		}
	}
}

// TestProcScanCountsFDs: the fd count that starts a one-shot lookup's
// /proc scan says a host past the limit is big at once (the iterators
// then start loading beside the dump), and from 6.2, which gives the
// count, scans a host within it. Before 6.2 every host is big.
func TestProcScanCountsFDs(t *testing.T) {
	testenv.RequireRoot(t)
	var big atomic.Bool
	ps := startProcScan(1, func() { big.Store(true) })
	<-ps.done
	if ps.small || !big.Load() || ps.socks != nil {
		t.Errorf("limit of 1 fd: small %v, big called %v, %d sockets scanned; want big, no scan", ps.small, big.Load(), len(ps.socks))
	}
	big.Store(false)
	ps = startProcScan(1<<30, func() { big.Store(true) })
	<-ps.done
	if want := host.ReleaseAtLeast(6, 2); ps.small != want || big.Load() == want || (ps.socks != nil) != want {
		t.Errorf("limit of 2^30 fds: small %v, big called %v, scanned %v; want small and scanned %v (kernel 6.2+)", ps.small, big.Load(), ps.socks != nil, want)
	}
}
