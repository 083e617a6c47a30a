package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Implicit binds: a connect(), sendto() or sendmsg() whose local port the
// kernel could not pick. TCP's connect() picks a port per destination
// (__inet_hash_connect: a port is free for it when no connection from it
// goes to the same address and port, and no socket listens on or was
// bound to it); UDP's autobind needs a port no UDP socket has.
// Every hint that says a step lets the call succeed is proven in a
// network namespace of its own (ephemeral_hints_test.go).

// isImplicit reports whether f is an implicit bind's failure.
func isImplicit(f *events.Failure) bool {
	return f.Destination != nil && (f.Syscall == "connect" || f.Syscall == "sendto" || f.Syscall == "sendmsg")
}

func diagnoseImplicit(f *events.Failure, facts Facts) Verdict {
	call := f.Syscall + "()"
	dst := events.HostPort(f.Destination.IP, f.Destination.Port)
	udp := f.Proto == "udp"
	eph := facts.Ephemeral
	lp := f.LocalPorts
	rangeText := "net.ipv4.ip_local_port_range"
	if eph.Known() {
		rangeText += " " + eph.RangeText()
		if strings.TrimSpace(eph.Reserved) != "" {
			rangeText += fmt.Sprintf(" less net.ipv4.ip_local_reserved_ports %s", eph.Reserved)
		}
	}
	where := "toward " + dst
	if udp {
		where = "by UDP sockets (a UDP socket takes its port for every destination)"
	}
	if lp == nil {
		return likely(verdict(events.CauseEphemeralExhausted,
			fmt.Sprintf("%s to %s/%s failed with %s: the kernel found no free local port in %s. bindwatch could not see which sockets hold the ports.", call, dst, f.Proto, f.Errno, rangeText),
			implicitHint(f, facts, nil)))
	}
	usage := fmt.Sprintf("%s of %s usable ports of %s in use %s", thousands(lp.InUse), thousands(lp.Usable), rangeText, where)
	if owners := ownersText(lp); owners != "" {
		usage += ": " + owners
	}
	if lp.InUse == 0 && !udp {
		// TCP's EADDRNOTAVAIL with the range free: not a port shortage
		// (no source address toward the destination), or ports freed
		// before bindwatch looked.
		return likely(verdict(events.CauseAddrNotAvailable,
			fmt.Sprintf("%s to %s/%s failed with EADDRNOTAVAIL, but when bindwatch looked no port of %s was in use toward it: the kernel found no local address to connect from (an IPv6 destination with no IPv6 address of its scope here), or the connections that used up the range closed since.", call, dst, f.Proto, rangeText),
			fmt.Sprintf("Check that this network namespace has an address and a route toward %s (`ip route get %s`); if the failures recur, `ss -tan dst %s` while they happen shows what holds the ports.", f.Destination.IP, f.Destination.IP, dst)))
	}
	v := verdict(events.CauseEphemeralExhausted,
		fmt.Sprintf("%s to %s/%s found no free local port: %s.", call, dst, f.Proto, usage),
		implicitHint(f, facts, lp))
	if lp.InUse < lp.Usable {
		v.Diagnosis += fmt.Sprintf(" (Fewer than all when bindwatch looked, after the failure: %s ports were freed since.)", thousands(lp.Usable-lp.InUse))
		v = likely(v)
	}
	return v
}

// implicitHint advises from what holds the ports.
func implicitHint(f *events.Failure, facts Facts, lp *events.LocalPorts) string {
	udp := f.Proto == "udp"
	var timeWait, live, programs int
	top := ""
	if lp != nil {
		for _, o := range lp.Owners {
			timeWait += o.States["TIME_WAIT"]
			if len(o.PIDs) > 0 {
				live += o.Ports
				programs++
				top = ownerName(o)
			}
		}
		programs += lp.MoreOwners
	}
	var steps []string
	if live > 0 || lp == nil {
		who := "the programs that hold them"
		if programs == 1 {
			who = top
		}
		if udp {
			steps = append(steps, fmt.Sprintf("close the UDP sockets %s no longer use, or send to many destinations from one socket instead of a socket each (closing one lets the call succeed)", who))
		} else {
			steps = append(steps, fmt.Sprintf("have %s reuse connections (HTTP keep-alive, a connection pool) instead of opening one per request, and close idle ones (a connection this side closes first keeps its port in TIME_WAIT for 60 s)", who))
		}
	}
	if !udp && (timeWait > 0 || lp == nil) {
		steps = append(steps, fmt.Sprintf("let connect() reuse ports in TIME_WAIT toward the same destination once they are a second old: `%s` (it affects connect() only, not a server's accepted connections)",
			sysctlCommand(f, facts, "net.ipv4.tcp_tw_reuse=1")))
	}
	widen := "widen net.ipv4.ip_local_port_range"
	if facts.Ephemeral.Known() {
		widen += fmt.Sprintf(" (now %s)", facts.Ephemeral.RangeText())
	}
	widen += fmt.Sprintf(": `%s` with more ports, an even number of them, kept clear of the ports servers listen on (`bindwatch doctor` checks that)",
		sysctlCommand(f, facts, `net.ipv4.ip_local_port_range="LO HI"`))
	steps = append(steps, widen)
	if !udp {
		steps = append(steps, "or spread connections over a second source address (bind() to it with IP_BIND_ADDRESS_NO_PORT before connect()) or more destination ports: the kernel counts ports per source address, destination address and destination port")
	}
	hint := strings.Join(steps, "; ")
	return strings.ToUpper(hint[:1]) + hint[1:] + "."
}

// ownersText is "4 ESTABLISHED by curl (pid 12); 900 TIME_WAIT of no process (closed connections)".
func ownersText(lp *events.LocalPorts) string {
	var parts []string
	for _, o := range lp.Owners {
		states := statesText(o.States)
		if len(o.PIDs) == 0 {
			parts = append(parts, states+" of no process")
			continue
		}
		parts = append(parts, states+" by "+ownerName(o))
	}
	if lp.MoreOwners > 0 {
		parts = append(parts, fmt.Sprintf("and %d more owners", lp.MoreOwners))
	}
	return strings.Join(parts, "; ")
}

// ownerName is "curl (pid 12)" or "curl (pids 12, 13)".
func ownerName(o events.PortOwner) string {
	name := events.Escape(o.Comm)
	if name == "" {
		name = "a process"
	}
	pids := make([]string, len(o.PIDs))
	for i, p := range o.PIDs {
		pids[i] = strconv.Itoa(p)
	}
	if len(pids) == 1 {
		return fmt.Sprintf("%s (pid %s)", name, pids[0])
	}
	return fmt.Sprintf("%s (pids %s)", name, strings.Join(pids, ", "))
}

// statesText is "3 ESTABLISHED, 1 TIME_WAIT": most first.
func statesText(states map[string]int) string {
	names := make([]string, 0, len(states))
	for n := range states {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(states[b], states[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = thousands(states[n]) + " " + events.Escape(n)
	}
	return strings.Join(parts, ", ")
}

// thousands is n with thousands separators: "1,024".
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return s
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
