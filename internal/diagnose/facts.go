package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Facts is what a diagnosis needs to know besides the failure itself:
// about the failing socket's network namespace, and the job it runs in.
type Facts struct {
	// Addrs are the addresses assigned to its interfaces (EADDRNOTAVAIL).
	Addrs []LocalAddr
	// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start there
	// (EACCES); 0 when unknown (a real 0 makes EACCES impossible anyway).
	UnprivilegedPortStart int
	// Ephemeral is the namespace's ephemeral port range (EADDRINUSE);
	// the zero value when unknown.
	Ephemeral EphemeralPorts
	// OwnNetns: the failing socket is in bindwatch's own network
	// namespace, where a plain sysctl command applies.
	OwnNetns bool
	// Job is the traced command the failing process belongs to (bindwatch
	// run), nil when none.
	Job *Job
	// SocketUnitNote says why the socket unit a service manager holds the
	// port for is not named (no holder's SocketUnit): the manager could
	// not be asked, or did not say. "" when it was named, or not asked.
	SocketUnitNote string
}

// Job is a command whose whole process tree is traced.
type Job struct {
	// Command is the command line, as the user typed it.
	Command string
	// Contains reports whether pid is in the command's process tree.
	Contains func(pid int) bool
}

// EphemeralPorts is a network namespace's range of local ports that
// connect() (and bind() to port 0) pick from, less the reserved ones.
// Both sysctls are per network namespace: a container has its own.
type EphemeralPorts struct {
	// Lo and Hi are net.ipv4.ip_local_port_range (it applies to IPv6
	// too); 0 when unknown.
	Lo, Hi int
	// Reserved is net.ipv4.ip_local_reserved_ports as the kernel prints
	// it: "", "8080", "8080,9000-9010".
	Reserved string
}

// Known reports whether the range could be read.
func (e EphemeralPorts) Known() bool { return e.Lo > 0 && e.Hi >= e.Lo }

// InRange reports whether port lies in ip_local_port_range.
func (e EphemeralPorts) InRange(port int) bool { return e.Known() && port >= e.Lo && port <= e.Hi }

// IsReserved reports whether port is in ip_local_reserved_ports.
func (e EphemeralPorts) IsReserved(port int) bool {
	for _, part := range strings.Split(e.Reserved, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		l, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		h := l
		if isRange {
			if h, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if port >= l && port <= h {
			return true
		}
	}
	return false
}

// Exposed reports whether outgoing connections may take port as their
// local port: it is in the range and not reserved.
func (e EphemeralPorts) Exposed(port int) bool { return e.InRange(port) && !e.IsReserved(port) }

// ReserveSetting is the sysctl setting that adds port to the reserved
// ports, keeping those already reserved.
func (e EphemeralPorts) ReserveSetting(port int) string {
	list := strconv.Itoa(port)
	if r := strings.TrimSpace(e.Reserved); r != "" {
		list = r + "," + list
	}
	return "net.ipv4.ip_local_reserved_ports=" + list
}

// RangeText is the range as the diagnosis writes it: "32768–60999".
func (e EphemeralPorts) RangeText() string {
	if e.Lo == e.Hi {
		return strconv.Itoa(e.Lo)
	}
	return fmt.Sprintf("%d–%d", e.Lo, e.Hi)
}

// LocalAddr is one address assigned to an interface.
type LocalAddr struct {
	Addr  netip.Addr
	Iface string
	// Tentative: an IPv6 address whose duplicate address detection has not
	// finished (or failed); bind() refuses it with EADDRNOTAVAIL.
	Tentative bool
}
