package resolve

import (
	"net/netip"

	"github.com/bindwatch/bindwatch/internal/events"
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
// overlap.
func addrsOverlap(want, held boundAddr) bool {
	if want.dev != 0 && held.dev != 0 && want.dev != held.dev {
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

// ipv4Overlap is the kernel's ipv4_rcv_saddr_equal with match_wildcard.
func ipv4Overlap(want, held netip.Addr, heldV6only bool) bool {
	if heldV6only {
		return false
	}
	return want == held || want.IsUnspecified() || held.IsUnspecified()
}

// bindFlags are what decides, once addresses overlap, whether the kernel
// lets two sockets share a port.
type bindFlags struct {
	reuseAddr, reusePort bool
	uid                  uint32
}

// reuseAllows reports whether the flags let a new socket (want) bind next
// to an existing one (held), given that their addresses overlap:
// inet_bind_conflict() for TCP bind() and listen(), udp_lib_lport_inuse()
// for UDP. A nil held flag is unknown and counted as off, the default.
//
//   - SO_REUSEADDR on both: TCP unless the held socket listens (for
//     listen() the new one is about to, so only listeners conflict); UDP
//     always.
//   - SO_REUSEPORT on both, same effective uid — any uid when the held
//     socket is in TIME_WAIT (TCP only).
func reuseAllows(want bindFlags, held *events.Holder) bool {
	heldReuse := held.ReuseAddr != nil && *held.ReuseAddr
	heldPort := held.ReusePort != nil && *held.ReusePort
	if want.reuseAddr && heldReuse && (held.Proto == "udp" || held.State != "LISTEN") {
		return true
	}
	if want.reusePort && heldPort {
		if held.Proto == "tcp" && held.State == "TIME_WAIT" {
			return true
		}
		return want.uid == held.UID
	}
	return false
}
