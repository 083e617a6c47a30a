package events

import "fmt"

// TypePortShared is a port_shared record.
const TypePortShared = "port_shared"

// PortShared says that a process's bind() (UDP) or listen() (TCP) with
// SO_REUSEPORT succeeded on an address another program holds: the kernel
// put both sockets in one reuseport group, and it now hands each new
// connection (or datagram flow) to one of the group's sockets by a hash —
// the holder silently loses a share of its traffic. Nothing failed, which
// is why nobody sees it: two unrelated programs, two versions of one
// started by hand, or a user's process taking a share of a service's
// connections. A program's own hand-over (nginx's binary upgrade,
// haproxy -sf) is the same program on both sides, and is not recorded
// (see docs/causes.md, "Silent sharing").
type PortShared struct {
	Header
	Source  string `json:"source"`  // SourceKernel
	Syscall string `json:"syscall"` // "listen" (TCP) or "bind" (UDP)
	Proto   string `json:"proto"`
	Netns   uint32 `json:"netns,omitempty"`
	Addr    string `json:"addr"`
	Port    uint16 `json:"port"`
	// Joiner is the process whose socket joined; Holder the process of
	// the socket that held the address before (the kernel's record of it).
	Joiner Process `json:"joiner"`
	Holder Process `json:"holder"`
	// GroupSize is how many sockets hold the address now (sock_diag, just
	// after the join; 0 when they could not be listed): the kernel splits
	// new connections among them, each getting about 1/GroupSize.
	GroupSize int `json:"group_size"`
	// Programs is how many different programs own those sockets, where
	// their owners were found (at least 2).
	Programs int `json:"programs,omitempty"`
	// Why says what tells the two sides apart: "program" (a different
	// executable or script), "unit" (the same program in a different
	// cgroup: another service, container or user session) or "copy" (the
	// same program in the same cgroup, and both still hold the address
	// after a grace: not a hand-over).
	Why string `json:"why"`
	// Repeats counts earlier joins of the same pair of processes on this
	// port that were not recorded (one record a minute per pair).
	Repeats uint32 `json:"repeats,omitempty"`
}

// Why values of a port_shared record.
const (
	SharedProgram = "program"
	SharedUnit    = "unit"
	// SharedCopy: the same program in the same cgroup, started again, and
	// both still hold the address after a grace (5 s): no hand-over.
	SharedCopy = "copy"
)

func portSharedText(r *PortShared) string {
	split := "the kernel splits new connections among the sockets"
	if r.GroupSize > 1 {
		split = fmt.Sprintf("the kernel splits new connections among %d sockets, about 1/%d each", r.GroupSize, r.GroupSize)
	}
	why := "a different program"
	switch r.Why {
	case SharedUnit:
		why = "the same program in a different cgroup (unit, container or session)"
	case SharedCopy:
		why = "a second copy of the same program, and the first still holds the port (no hand-over)"
	}
	s := fmt.Sprintf("%s PORT SHARED %s %s: %s by %s joined the SO_REUSEPORT group of %s, %s; %s",
		clock(r.Time), r.Proto, HostPort(r.Addr, r.Port), r.Syscall, ProcessShort(&r.Joiner), ProcessShort(&r.Holder), why, split)
	if r.Repeats > 0 {
		s += fmt.Sprintf(" (%d more join%s of this pair not recorded)", r.Repeats, Plural(int(r.Repeats)))
	}
	return s + " (hint: if this sharing is not intended, stop the joiner or give it another port; SO_REUSEPORT lets any process of the same user join)"
}
