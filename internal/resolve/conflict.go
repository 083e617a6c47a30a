package resolve

import (
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// boundAddr is a socket's local address as the kernel's bind-conflict check
// sees it.
type boundAddr struct {
	v6     bool       // an AF_INET6 socket
	addr   netip.Addr // 4 bytes for AF_INET, 16 for AF_INET6 (v4-mapped stays mapped)
	v6only bool       // IPV6_V6ONLY
	dev    uint32     // SO_BINDTODEVICE ifindex, 0 if none
}

// rcvSaddr4 is the socket's IPv4 side: its address for an IPv4 socket,
// the mapped part of a v4-mapped one, 0.0.0.0 for ::, and none (the zero
// Addr, equal to no address) for a specific IPv6 address.
func (b boundAddr) rcvSaddr4() netip.Addr {
	switch {
	case !b.v6:
		return b.addr
	case b.addr.Is4In6():
		return b.addr.Unmap()
	case b.addr == netip.IPv6Unspecified():
		return netip.IPv4Unspecified()
	}
	return netip.Addr{}
}

// isMapped is ipv6_addr_type()'s IPV6_ADDR_MAPPED, true also for an IPv4
// socket (the kernel treats it as mapped when comparing against IPv6).
func (b boundAddr) isMapped() bool { return !b.v6 || b.addr.Is4In6() }

// isAny is IPV6_ADDR_ANY (::) for an IPv6 socket.
func (b boundAddr) isAny() bool { return b.v6 && b.addr == netip.IPv6Unspecified() }

// addrsOverlap reports whether a new socket binding want would share an
// address with the existing socket held, as the kernel decides it in
// inet_rcv_saddr_equal(sk=want, sk2=held, match_wildcard=true): exact
// match, a wildcard on either side, `::` without IPV6_V6ONLY covering every
// IPv4 address, and v4-mapped addresses meeting IPv4 ones. It is not
// symmetric, like the kernel's. Sockets bound to different devices never
// overlap. quirks are the running kernel's departures from that rule for
// the protocol (bindQuirksFor).
func addrsOverlap(want, held boundAddr, quirks bindQuirks) bool {
	if want.dev != 0 && held.dev != 0 && want.dev != held.dev {
		return false
	}
	if quirks.mappedAnyMissed && want.isMapped() && want.v6 && !want.rcvSaddr4().IsUnspecified() &&
		held.v6 && held.isMapped() && held.rcvSaddr4().IsUnspecified() {
		return false
	}
	if !want.v6 {
		// A specific IPv6 address has no IPv4 side, so even 0.0.0.0
		// binds next to [::1] without IPV6_V6ONLY (tested on 6.18).
		if !held.rcvSaddr4().IsValid() {
			return false
		}
		return ipv4Overlap(want.addr, held.rcvSaddr4(), held.v6only)
	}
	if want.isMapped() && held.isMapped() {
		return ipv4Overlap(want.rcvSaddr4(), held.rcvSaddr4(), held.v6only)
	}
	if want.isAny() && held.isAny() {
		return true
	}
	if held.isAny() && !(held.v6only && want.isMapped()) {
		return true
	}
	if want.isAny() && !(want.v6only && held.isMapped()) {
		return true
	}
	return held.v6 && want.addr == held.addr
}

// bindQuirks are departures of the running kernel's bind-conflict check
// from inet_rcv_saddr_equal, found by binding real sockets once per process
// (probeMappedAnyMissed).
type bindQuirks struct {
	// mappedAnyMissed: a TCP bind to a specific v4-mapped address
	// (::ffff:127.0.0.1) succeeds next to a socket on ::ffff:0.0.0.0.
	//
	// Since 6.1 (bhash2) a TCP bind to a specific address looks for
	// wildcard holders with inet_bind2_bucket_match_addr_any(). Upstream,
	// 6.8 made v4-mapped specific addresses take that path ("tcp: Use
	// bhash2 for v4-mapped-v6 non-wildcard address", 5e07e672412b) in the
	// same series as "tcp: Save v4 address as v4-mapped-v6 in
	// inet_bind2_bucket.v6_rcv_saddr.", which lets such a lookup match an
	// IPv6 socket's ::ffff:0.0.0.0 bucket (patches 1 and 3 of 12). 6.1
	// stable took the first as a dependency of "udp: Fix wildcard bind
	// conflict check when using hash2" (2026-04) without the third: there an
	// AF_INET6 bind to ::ffff:X.X.X.X matches only `::` and 0.0.0.0
	// buckets, and misses ::ffff:0.0.0.0 (seen on Debian's 6.1.0-57,
	// 6.1.192). Before 6.1 (no bhash2) and from 6.8 the bind fails.
	mappedAnyMissed bool
}

// probedMappedAnyMissed is probeMappedAnyMissed's answer, asked once.
var probedMappedAnyMissed = sync.OnceValue(probeMappedAnyMissed)

// ProbeKernel asks the kernel, now, what resolving a failure will need to
// know of it (its bind quirks: two test binds). The tracer calls it before
// it attaches: its probes are then never traced, even where bindwatch runs
// without CAP_NET_ADMIN and cannot mark them (the shipped unit and image).
func ProbeKernel() { probedMappedAnyMissed() }

// bindQuirksFor returns the running kernel's bind quirks for proto ("tcp"
// or "udp"); UDP's check (udp_lib_lport_inuse) has none known.
func bindQuirksFor(proto string) bindQuirks {
	if proto != "tcp" {
		return bindQuirks{}
	}
	return bindQuirks{mappedAnyMissed: probedMappedAnyMissed()}
}

// probeMappedAnyMissed binds a TCP socket to ::ffff:0.0.0.0 on a port the
// kernel picks, then another to ::ffff:127.0.0.1 on the same port, and
// reports whether the second bind succeeded. Both are marked as
// bindwatch's own probes (host.MarkProbe), so a running tracer does not
// report the second bind's failure, which is the upstream outcome. Neither
// listens, and both are closed at once: the port, one of the ephemeral range no server binds on
// purpose, is held for a few microseconds. Anything else going wrong (no
// IPv6, no loopback address) reports no quirk: the upstream rule.
func probeMappedAnyMissed() bool {
	socket := func() (int, error) {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		host.MarkProbe(fd)
		// A v4-mapped address needs a dual-stack socket, whatever
		// net.ipv6.bindv6only makes the default.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	held, err := socket()
	if err != nil {
		return false
	}
	defer unix.Close(held)
	if err := unix.Bind(held, &unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:0.0.0.0").As16()}); err != nil {
		return false
	}
	sa, err := unix.Getsockname(held)
	if err != nil {
		return false
	}
	bound, ok := sa.(*unix.SockaddrInet6)
	if !ok {
		return false
	}
	want, err := socket()
	if err != nil {
		return false
	}
	defer unix.Close(want)
	return unix.Bind(want, &unix.SockaddrInet6{Port: bound.Port, Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}) == nil
}

// ipv4Overlap is the kernel's ipv4_rcv_saddr_equal with match_wildcard.
func ipv4Overlap(want, held netip.Addr, heldV6only bool) bool {
	if heldV6only {
		return false
	}
	return want == held || want.IsUnspecified() || held.IsUnspecified()
}
