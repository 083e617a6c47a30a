package diagnose

import "github.com/bindwatch/bindwatch/internal/events"

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
