package deploy

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	os.Exit(m.Run())
}

// TestTimeWaitNeedsReuseAddrOnBothSockets checks on this kernel, with real
// sockets, what bindwatch tells users about TIME_WAIT: a TIME_WAIT socket
// blocks bind() unless both it (its listener) and the new socket set
// SO_REUSEADDR, and it lasts 60 s.
func TestTimeWaitNeedsReuseAddrOnBothSockets(t *testing.T) {
	for _, c := range []struct {
		name                    string
		listenerReuse, newReuse bool
		wantBindable            bool
	}{
		{"neither", false, false, false},
		{"only the new socket", false, true, false},
		{"only the old socket", true, false, false},
		{"both", true, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			testenv.LeaveTimeWait(t, "127.0.0.1", port, c.listenerReuse)
			for _, addr := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
				ref, err := Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{Addrs: []netip.Addr{addr}, ReuseAddr: c.newReuse})
				if err != nil {
					t.Fatal(err)
				}
				if got := ref == nil; got != c.wantBindable {
					t.Errorf("bind %s over TIME_WAIT (listener reuseaddr=%v, new reuseaddr=%v): bindable=%v (%v), want %v",
						addr, c.listenerReuse, c.newReuse, got, ref, c.wantBindable)
				}
				if ref != nil && ref.Errno != unix.EADDRINUSE {
					t.Errorf("refused with %v, want EADDRINUSE", ref.Errno)
				}
			}
		})
	}
}

// TestExplainTimeWait: a port refused only because of TIME_WAIT is
// explained as such, with ~60 s left right after the close, and no
// process to stop.
func TestExplainTimeWait(t *testing.T) {
	testenv.RequireRoot(t) // the TIME_WAIT sockets' SO_REUSEADDR is read by a BPF iterator
	port := testenv.FreePort(t)
	testenv.LeaveTimeWait(t, "127.0.0.1", port, false)
	r, err := resolve.New(resolve.Options{CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ref, err := Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{ReuseAddr: true})
	if err != nil || ref == nil {
		t.Fatalf("Bindable over TIME_WAIT left without SO_REUSEADDR = %v, %v; want a refusal", ref, err)
	}
	busy, err := Explain(r, r.OwnNetns(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !busy.OnlyTimeWait() {
		t.Fatalf("holders %+v: want only TIME_WAIT", busy.Holders)
	}
	if left := busy.TimeWait.MaxRemainingMS; left < 55_000 || left > 60_000 {
		t.Errorf("TIME_WAIT has %dms left right after the close; Linux keeps it a fixed 60 s", left)
	}
	for _, want := range []string{"TIME_WAIT", "60 s", "tcp_fin_timeout", "both"} {
		if !strings.Contains(busy.Diagnosis+" "+busy.Hint, want) {
			t.Errorf("diagnosis lacks %q:\n%s\n%s", want, busy.Diagnosis, busy.Hint)
		}
	}
}

// TestBindableAddresses: the default check (0.0.0.0 and dual-stack [::])
// is refused by a holder on any address, a check on a given address only
// by a holder whose address overlaps it — as the kernel decides.
func TestBindableAddresses(t *testing.T) {
	v6only := true
	for _, c := range []struct {
		name       string
		holder     string
		holderOpts testenv.Opts
		addrs      []string
		want       bool // bindable
	}{
		{"loopback listener, default addresses", "127.0.0.1", testenv.Opts{}, nil, false},
		{"loopback listener, another loopback address", "127.0.0.1", testenv.Opts{}, []string{"127.0.0.2"}, true},
		{"loopback listener, IPv4 wildcard", "127.0.0.1", testenv.Opts{}, []string{"0.0.0.0"}, false},
		{"IPv6 loopback listener, default addresses", "::1", testenv.Opts{}, nil, false},
		{"IPv6 loopback listener, IPv4 wildcard", "::1", testenv.Opts{}, []string{"0.0.0.0"}, true},
		{"IPv6-only wildcard listener, IPv4 wildcard", "::", testenv.Opts{V6Only: &v6only}, []string{"0.0.0.0"}, true},
		{"dual-stack wildcard listener, IPv4 loopback", "::", testenv.Opts{}, []string{"127.0.0.1"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			testenv.Hold(t, "tcp", c.holder, port, c.holderOpts)
			var opts BindOptions
			for _, a := range c.addrs {
				opts.Addrs = append(opts.Addrs, netip.MustParseAddr(a))
			}
			ref, err := Bindable(nil, Port{uint16(port), "tcp"}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := ref == nil; got != c.want {
				t.Errorf("bindable = %v (%v), want %v", got, ref, c.want)
			}
		})
	}
}

// TestBindableListenConflict: with SO_REUSEADDR on both, bind() passes
// next to a socket that is only bound, but listen() fails next to a
// listener; a TCP check listens, as a server would.
func TestBindableListenConflict(t *testing.T) {
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{ReuseAddr: true})
	ref, err := Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{Addrs: []netip.Addr{netip.IPv4Unspecified()}, ReuseAddr: true})
	if err != nil || ref == nil {
		t.Fatalf("Bindable next to a listener = %v, %v; want a refusal", ref, err)
	}

	// A socket bound (not listening) with SO_REUSEADDR: both may bind,
	// and the check, alone in listening, passes.
	port = testenv.FreePort(t)
	fd, err := testenv.Socket("tcp", "0.0.0.0", testenv.Opts{ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := testenv.Bind(fd, "0.0.0.0", port); err != nil {
		t.Fatal(err)
	}
	ref, err = Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{Addrs: []netip.Addr{netip.IPv4Unspecified()}, ReuseAddr: true})
	if err != nil || ref != nil {
		t.Errorf("Bindable with SO_REUSEADDR next to a bound, not listening socket that has it = %v, %v; want bindable", ref, err)
	}
	ref, err = Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{Addrs: []netip.Addr{netip.IPv4Unspecified()}})
	if err != nil || ref == nil || ref.Syscall != "bind" {
		t.Errorf("Bindable without SO_REUSEADDR next to a bound socket = %v, %v; want bind() refused", ref, err)
	}
}

func TestBindableUDPReuseAddr(t *testing.T) {
	port := testenv.FreePort(t)
	testenv.Hold(t, "udp", "0.0.0.0", port, testenv.Opts{ReuseAddr: true})
	p := Port{uint16(port), "udp"}
	if ref, err := Bindable(nil, p, BindOptions{}); err != nil || ref == nil {
		t.Errorf("udp without SO_REUSEADDR next to a holder = %v, %v; want refused", ref, err)
	}
	if ref, err := Bindable(nil, p, BindOptions{ReuseAddr: true}); err != nil || ref != nil {
		t.Errorf("udp with SO_REUSEADDR next to a holder that has it = %v, %v; want bindable", ref, err)
	}
}

// TestBindableLeavesNothingBehind: checking a free port, even as a TCP
// listener, leaves no socket (no TIME_WAIT) that would stop the server.
func TestBindableLeavesNothingBehind(t *testing.T) {
	port := testenv.FreePort(t)
	for i := 0; i < 3; i++ {
		if ref, err := Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{}); err != nil || ref != nil {
			t.Fatalf("check %d of a free port = %v, %v", i, ref, err)
		}
	}
	testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{}) // fails the test if it cannot
}

func TestBindableRefusalsWaitingCannotCure(t *testing.T) {
	ref, err := Bindable(nil, Port{8080, "tcp"}, BindOptions{Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}})
	if err != nil || ref == nil || ref.Errno != unix.EADDRNOTAVAIL || ref.InUse() {
		t.Fatalf("bind to an address this host lacks = %v, %v; want EADDRNOTAVAIL", ref, err)
	}
	if !strings.Contains(ref.Hint(), "203.0.113.1") {
		t.Errorf("hint %q does not name the address", ref.Hint())
	}
	if _, err := Bindable(nil, Port{0, "tcp"}, BindOptions{}); err == nil {
		t.Error("port 0 accepted")
	}
	if _, err := Bindable(nil, Port{80, "sctp"}, BindOptions{}); err == nil {
		t.Error("sctp accepted")
	}
}
