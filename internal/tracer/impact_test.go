package tracer

import (
	"errors"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestImpactCountsWhatClientsMet: while a port has an open incident, the
// kernel counts the connection attempts it refused (the client saw
// ECONNREFUSED) and the datagrams it dropped for no socket, per port, in
// a private network namespace; a port without an incident counts nothing,
// and a restarted listener's accepted connections are not counted.
func TestImpactCountsWhatClientsMet(t *testing.T) {
	testenv.RequireRoot(t)
	tr, err := Open(Config{Backend: testenv.Backend(), Ports: []PortRange{{Lo: 1, Hi: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.ImpactSource() == "" {
		if _, err := tr.Impact(PortKey{Proto: "tcp", Port: 1}); !errors.Is(err, ErrImpactNotMeasured) {
			t.Fatalf("no impact hook on this kernel, Impact says %v, want ErrImpactNotMeasured", err)
		}
		if testenv.KernelAtLeast(t, 5, 17) {
			t.Fatal("kernel 5.17+ (kfree_skb with a drop reason), but no client impact hook")
		}
		if _, ok := tr.Limits()["client_impact"]; !ok {
			t.Errorf("client impact not measured, and the start record's limits do not say so: %v", tr.Limits())
		}
		t.Log("client impact not measured on this kernel (kfree_skb without a drop reason), as it says")
		return
	}
	ns := testenv.PrivateNetns(t)
	inode, err := host.NetnsInode(ns.Name())
	if err != nil {
		t.Fatal(err)
	}
	var cookie uint64
	testenv.InPrivateNetns(t, ns, func() { cookie = netnsCookie(t) })
	const port, other, stranger = 8081, 8082, 8083
	tcp := PortKey{Netns: inode, Proto: "tcp", Port: port}
	udp := PortKey{Netns: inode, Proto: "udp", Port: port}
	for _, k := range []PortKey{tcp, udp} {
		if ok, err := tr.WatchPort(k, cookie, nil); !ok || err != nil {
			t.Fatalf("WatchPort %v: %v %v", k, ok, err)
		}
	}
	// An incident of another namespace that had this inode (another
	// cookie): what clients meet here is not its impact.
	if ok, err := tr.WatchPort(PortKey{Netns: inode, Proto: "tcp", Port: stranger}, cookie+1, nil); !ok || err != nil {
		t.Fatalf("WatchPort %d: %v %v", stranger, ok, err)
	}
	var refused, served, sent int
	testenv.InPrivateNetns(t, ns, func() {
		to := func(p int) *unix.SockaddrInet4 { return &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}} }
		connect := func(p int) error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			return unix.Connect(fd, to(p))
		}
		// A rolling restart, told from the client's side: three gaps with
		// nothing listening, a listener between them.
		for round := range 3 {
			for range 5 + round {
				switch err := connect(port); {
				case errors.Is(err, unix.ECONNREFUSED):
					refused++
				case err != nil:
					t.Fatalf("connect to the closed port: %v, want ECONNREFUSED", err)
				}
				for _, p := range []int{other, stranger} {
					if err := connect(p); !errors.Is(err, unix.ECONNREFUSED) {
						t.Fatalf("connect to the other closed port %d: %v, want ECONNREFUSED", p, err)
					}
				}
			}
			l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			unix.SetsockoptInt(l, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if err := unix.Bind(l, to(port)); err != nil {
				t.Fatal(err)
			}
			if err := unix.Listen(l, 16); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := connect(port); err != nil {
					t.Fatalf("connect to the listener: %v", err)
				}
				served++
			}
			unix.Close(l)
		}
		u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(u)
		for range 4 {
			if err := unix.Sendto(u, []byte("x"), 0, to(port)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	})
	t.Logf("client: %d refused, %d served, %d datagrams sent", refused, served, sent)
	start := time.Now()
	tc, err := tr.Impact(tcp)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Count != uint64(refused) {
		t.Errorf("refused connections: the kernel counted %d, the client saw %d ECONNREFUSED (and %d served)", tc.Count, refused, served)
	}
	if tc.First.IsZero() || tc.Last.Before(tc.First) || tc.Last.After(start) {
		t.Errorf("refused connections: first %v, last %v: want first <= last <= %v", tc.First, tc.Last, start)
	}
	uc, err := tr.Impact(udp)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Count != uint64(sent) {
		t.Errorf("dropped datagrams: the kernel counted %d, the client sent %d to the closed port", uc.Count, sent)
	}
	oc, err := tr.Impact(PortKey{Netns: inode, Proto: "tcp", Port: other})
	if err != nil || oc.Count != 0 {
		t.Errorf("a port without an incident: count %d (%v), want 0", oc.Count, err)
	}
	sc, err := tr.Impact(PortKey{Netns: inode, Proto: "tcp", Port: stranger})
	if err != nil || sc.Count != 0 {
		t.Errorf("a port with an incident of another namespace (cookie): count %d (%v), want 0", sc.Count, err)
	}
	// Unwatched, the count is gone: the next incident starts from zero.
	if err := tr.UnwatchPort(tcp, nil); err != nil {
		t.Fatal(err)
	}
	if c, err := tr.Impact(tcp); err != nil || c.Count != 0 {
		t.Errorf("after UnwatchPort: count %d (%v), want 0", c.Count, err)
	}
}

// netnsCookie is the calling thread's network namespace's cookie
// (SO_NETNS_COOKIE, 5.14+: every kernel that counts client impact has it).
func netnsCookie(t *testing.T) uint64 {
	t.Helper()
	const soNetnsCookie = 71
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var c uint64
	l := uint32(unsafe.Sizeof(c))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, soNetnsCookie, uintptr(unsafe.Pointer(&c)), uintptr(unsafe.Pointer(&l)), 0); errno != 0 {
		t.Fatalf("getsockopt SO_NETNS_COOKIE: %v (hint: needs Linux 5.14+)", errno)
	}
	return c
}
