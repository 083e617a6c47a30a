// Package diagnose judges a failed bind() or listen(): from the failure,
// the sockets that hold its address and facts about the failing process's
// network namespace, it says why the kernel refused (the cause, one word a
// SIEM counts by), how sure that is, in one sentence why, and what to do.
// It is pure — facts in, verdict out: it imports only events and reads
// nothing from the host, so every rule is tested with a table.
//
// The rules, in order; the first that matches decides. docs/causes.md lists
// the same, with the evidence each needs and what its hint advises.
//
//	connect(), sendto(), sendmsg() (implicit.go: the kernel found no local port)
//	                ephemeral_exhausted; addr_not_available when no port of
//	                the range is in use toward the destination (TCP)
//	EADDRNOTAVAIL   addr_tentative (IPv6 DAD), else addr_not_available
//	EACCES          privileged_port (below ip_unprivileged_port_start), else access_denied
//	EINVAL          cannot_listen (listen), already_bound (bind)
//	EADDRINUSE
//	 1. port 0                                              ephemeral_exhausted
//	    The blocking holder is the first live one whose flags do not let the
//	    new socket share the port (else the first live one). With one:
//	 2. the failing process's own outgoing connection       ephemeral_port
//	 3. the failing process itself                          self_conflict (dual-stack: the v6only fix)
//	 4. a process of the same traced command                same_job
//	 5. listen() beside another listener (SO_REUSEADDR)     listen_conflict
//	 6. another outgoing connection from the ephemeral range ephemeral_port
//	 7. IPv4 meets a dual-stack :: socket, either side      dual_stack
//	 8. a manager holding it for others                     docker_proxy, container_runtime,
//	                                                        kube_proxy, socket_activation, sshd, inetd
//	 9. a leftover, with the kernel's evidence that the     leftover
//	    instance it belonged to is gone (lineage.go)
//	10. the same program, running (program.go)              already_running
//	11. SO_REUSEPORT on one side, or under two users        reuseport_missing, reuseport_user
//	12. a wildcard and a specific address                   address_overlap
//	13. a TCP socket bound but not listening                bound_not_listening
//	14. anything else live                                  port_in_use
//	    With no live holder:
//	15. one the kernel recorded at the failure, gone since  same_job, else restart_race
//	16. only TIME_WAIT: an outgoing connection's            ephemeral_port
//	                    else                                time_wait
//	17. nothing                                             holder_gone
//
// Confidence is certain unless the rule says likely: where the evidence is
// a name the process chose (a manager's comm), a program told by its comm
// alone, or an orphan whose parent's end the kernel saw but whose instance
// may still be wanted.
package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Verdict is a diagnosis: the cause (one of the events.Cause* values), how
// sure it is (events.ConfidenceCertain or ConfidenceLikely), why the kernel
// refused in one sentence, and what to do.
type Verdict struct {
	Cause, Confidence, Diagnosis, Hint string
}

// verdict is a certain verdict.
func verdict(cause, diagnosis, hint string) Verdict {
	return Verdict{Cause: cause, Confidence: events.ConfidenceCertain, Diagnosis: diagnosis, Hint: hint}
}

// likely is v, hedged: the evidence supports it without proving it.
func likely(v Verdict) Verdict {
	v.Confidence = events.ConfidenceLikely
	return v
}

// Diagnose says why the kernel refused f and what to do, from what has been
// resolved: f's errno, socket options and process, its holders (already
// filtered to those whose address overlaps, see Resolver.Resolve) and
// TimeWait, and facts about its network namespace and job. It reads
// nothing else, so every case can be tested with a table.
func Diagnose(f *events.Failure, facts Facts, now time.Time) Verdict {
	if isImplicit(f) {
		return diagnoseImplicit(f, facts)
	}
	switch f.Errno {
	case "EADDRINUSE":
		return diagnoseInUse(f, facts, now)
	case "EADDRNOTAVAIL":
		return diagnoseNotAvail(f, facts)
	case "EACCES":
		return diagnoseAccess(f, facts)
	case "EINVAL":
		if f.Syscall == "listen" {
			return verdict(events.CauseCannotListen, "listen() was refused because the socket cannot listen: it is connected, connecting or shut down.",
				"Call listen() on a fresh socket that is only bound, not on one that has been connected.")
		}
		return verdict(events.CauseAlreadyBound, fmt.Sprintf("bind() was refused because the socket is already bound (bind() was called twice on one socket, or the address length does not match the %s family).", familyName(f.Family)),
			"Bind each socket once; to change its address, close it and bind a new socket.")
	}
	return Verdict{}
}

func diagnoseInUse(f *events.Failure, facts Facts, now time.Time) Verdict {
	where := events.HostPort(f.Addr, f.Port) + "/" + f.Proto
	if f.Port == 0 {
		return verdict(events.CauseEphemeralExhausted, fmt.Sprintf("No free ephemeral port was left for %s/%s: every port in net.ipv4.ip_local_port_range is in use for that address.", f.Addr, f.Proto),
			"Widen net.ipv4.ip_local_port_range, close idle sockets, or bind to a fixed port.")
	}
	want := bindFlags{reuseAddr: f.Socket.ReuseAddr, reusePort: f.Socket.ReusePort, uid: f.Process.UID}
	var holding, recorded, timeWait []*events.Holder
	for i := range f.Holders {
		h := &f.Holders[i]
		switch {
		case h.Source == events.Recorded:
			recorded = append(recorded, h)
		case h.State == "TIME_WAIT":
			timeWait = append(timeWait, h)
		default:
			holding = append(holding, h)
		}
	}
	// The holder that blocks: one whose flags do not let the new socket
	// share; if every live one would (flags unknown count as off), the
	// first is still the best guess.
	var h *events.Holder
	for _, c := range holding {
		if !reuseAllows(want, c) {
			h = c
			break
		}
	}
	if h == nil && len(holding) > 0 {
		h = holding[0]
	}
	switch {
	case h != nil:
		return diagnoseLiveHolder(f, h, want, facts, now)
	case len(recorded) > 0:
		r := recorded[0]
		if v, ok := diagnoseJobGone(f, r, facts); ok {
			return v
		}
		// The socket is gone; whether its process is too, the kernel
		// says only when it saw it exit.
		since := "which has let go of it since (closed the socket, or exited)"
		if len(r.Processes) > 0 && r.Processes[0].Exit != nil {
			how, _ := ended(r.Processes[0].Exit, time.Time{})
			since = "which has exited since (it " + strings.TrimSuffix(how, " right after starting it") + ")"
		}
		return verdict(events.CauseRestartRace, fmt.Sprintf("%s was held at the moment of the failure by %s, %s: a restart race (the new instance started before the old one let go).",
			where, procsName(r), since),
			"The port is free now: retry bind() with a short backoff, and make restarts wait until the old instance has exited (with systemd, keep KillMode=control-group so that a restart stops every process of the old instance first).")
	case len(timeWait) > 0:
		if outgoing(timeWait[0], f.Port, facts.Ephemeral) {
			return diagnoseEphemeral(f, timeWait[0], facts, now)
		}
		return diagnoseTimeWait(f, timeWait)
	}
	return verdict(events.CauseHolderGone, fmt.Sprintf("No socket holds %s any more: the holder closed it before bindwatch looked.", where),
		"The port is free now: retry bind() with a short backoff.")
}

func diagnoseLiveHolder(f *events.Failure, h *events.Holder, want bindFlags, facts Facts, now time.Time) Verdict {
	who := procsName(h)
	age := holdAge(h, now)
	// "Port 8080/tcp is held by nginx (pid 42, user www), listening on
	// 0.0.0.0:8080, running for 3h0m"
	heldBy := fmt.Sprintf("Port %d/%s is held by %s, %s %s%s", f.Port, f.Proto, who, stateVerb(h), events.HostPort(h.Addr, h.Port), age)
	kill := killHint(h)

	if v, ok := diagnoseOwnJob(f, h, facts, now); ok {
		return v
	}
	if f.Syscall == "listen" {
		return verdict(events.CauseListenConflict, fmt.Sprintf("listen() failed because %s already listens on %s; both sockets were bound with SO_REUSEADDR, which lets sockets share a port only until one of them listens.", who, events.HostPort(h.Addr, h.Port)),
			"Bind a different port; to share one port between listeners, set SO_REUSEPORT on every listening socket (same user); or "+kill+".")
	}
	if outgoing(h, f.Port, facts.Ephemeral) {
		return diagnoseEphemeral(f, h, facts, now)
	}
	overlap, overlapCause := overlapKind(f, h)
	// Only a listener (or a UDP socket) is explained by the overlap of
	// addresses: a TCP socket that does not listen conflicts on other terms.
	overlaps := overlap != "" && (h.State == "LISTEN" || f.Proto == "udp")
	if overlaps && overlapCause == events.CauseDualStack {
		return verdict(overlapCause, fmt.Sprintf("%s/%s conflicts with %s, held by %s%s: %s.", events.HostPort(f.Addr, f.Port), f.Proto, events.HostPort(h.Addr, h.Port), who, age, overlap),
			overlapHint(f, h, kill))
	}
	if v, ok := diagnoseManager(f, h, heldBy, facts); ok {
		return v
	}
	if v, ok := diagnoseLeftover(f, h, age); ok {
		return v
	}
	if v, ok := diagnoseAlreadyRunning(f, h, facts, now); ok {
		return v
	}
	holderPort := h.ReusePort != nil && *h.ReusePort
	if h.State != "TIME_WAIT" && (want.reusePort || holderPort) && !reuseAllows(want, h) {
		switch {
		case want.reusePort && h.ReusePort != nil && !holderPort:
			return verdict(events.CauseReusePortMissing, heldBy+", without SO_REUSEPORT; this socket set SO_REUSEPORT, but the kernel shares a port only when every socket on it sets it: the holder lacks it.",
				"Set SO_REUSEPORT on the holder's socket too (before its bind()), or "+kill+".")
		case !want.reusePort && holderPort:
			return verdict(events.CauseReusePortMissing, heldBy+", with SO_REUSEPORT, but this socket did not set SO_REUSEPORT: the kernel shares a port only when every socket on it sets it, and this one lacks it.",
				"Set SO_REUSEPORT on this socket before bind().")
		case want.reusePort && holderPort && want.uid != h.UID:
			return verdict(events.CauseReusePortUser, heldBy+fmt.Sprintf("; both sockets set SO_REUSEPORT, but the kernel shares a port only between sockets of the same effective uid: the holder's is %d, this process's %d.", h.UID, want.uid),
				"Run every process that shares the port under the same user, or use different ports.")
		}
	}
	// Only a listener (or a UDP socket) is explained by the overlap of
	// addresses: a TCP socket that does not listen conflicts on other terms.
	if overlaps {
		return verdict(overlapCause, fmt.Sprintf("%s/%s conflicts with %s, held by %s%s: %s.", events.HostPort(f.Addr, f.Port), f.Proto, events.HostPort(h.Addr, h.Port), who, age, overlap),
			overlapHint(f, h, kill))
	}
	if h.State == "BOUND" && f.Proto == "tcp" {
		return verdict(events.CauseBoundNotListening, heldBy+fmt.Sprintf(": a TCP socket that is not a listener — a client that bound before it connects, or a server stuck between bind() and listen() — still owns the port; it can be shared with a socket that does not listen only when both sockets set SO_REUSEADDR (this one: %s, the holder: %s).", onOff(&want.reuseAddr), onOff(h.ReuseAddr)),
			"Set SO_REUSEADDR on both sockets before bind() (the bind then succeeds; listen() still fails once the other socket listens), find why the holder never calls listen() or connect(), or "+kill+".")
	}
	if h.State != "LISTEN" && f.Proto == "tcp" {
		return verdict(events.CausePortInUse, heldBy+fmt.Sprintf("; a port can be shared with a socket that does not listen only when both sockets set SO_REUSEADDR (this one: %s, the holder: %s).", onOff(&want.reuseAddr), onOff(h.ReuseAddr)),
			"Set SO_REUSEADDR on both sockets before bind(), or "+kill+".")
	}
	if f.Proto == "udp" {
		return verdict(events.CausePortInUse, heldBy+".",
			"Use another port, or "+kill+". UDP sockets can share a port when all of them set SO_REUSEADDR (or SO_REUSEPORT, same user).")
	}
	return verdict(events.CausePortInUse, heldBy+".", "Use another port, or "+kill+".")
}

// overlapKind explains, when the holder's address is not the requested one,
// how the two still overlap, and the cause; "" when they are the same
// address.
func overlapKind(f *events.Failure, h *events.Holder) (string, string) {
	want, err1 := netip.ParseAddr(f.Addr)
	held, err2 := netip.ParseAddr(h.Addr)
	if err1 != nil || err2 != nil || want.Unmap() == held.Unmap() {
		return "", ""
	}
	wantV6 := f.Family == "ipv6"
	heldV6 := held.Is6() && !held.Is4In6()
	heldDual := held == netip.IPv6Unspecified() && (h.V6Only == nil || !*h.V6Only)
	wantDual := want == netip.IPv6Unspecified() && (f.Socket.V6Only == nil || !*f.Socket.V6Only)
	switch {
	case !wantV6 && heldDual:
		return "an IPv6 socket bound to :: without IPV6_V6ONLY is dual-stack and also owns the port on every IPv4 address", events.CauseDualStack
	case wantDual && !heldV6:
		return "this IPv6 socket was bound to :: without IPV6_V6ONLY, so it is dual-stack and also claims the port on every IPv4 address", events.CauseDualStack
	case want.IsUnspecified():
		return "the wildcard address covers every address, including the holder's", events.CauseAddressOverlap
	case held.IsUnspecified():
		return "the holder's wildcard address covers every address, including this one", events.CauseAddressOverlap
	}
	return "the addresses overlap", events.CauseAddressOverlap
}

func overlapHint(f *events.Failure, h *events.Holder, kill string) string {
	want, _ := netip.ParseAddr(f.Addr)
	held, _ := netip.ParseAddr(h.Addr)
	switch {
	case want == netip.IPv6Unspecified() || held == netip.IPv6Unspecified():
		return "Set IPV6_V6ONLY=1 on the IPv6 socket before bind() (nginx: listen [::]:PORT ipv6only=on; sysctl net.ipv6.bindv6only sets the default) so that the IPv4 and IPv6 sockets can coexist, or use the dual-stack socket alone; or " + kill + "."
	case f.Proto == "udp":
		return "Set SO_REUSEADDR on both sockets (UDP then allows a wildcard and a specific address on one port), bind addresses that do not overlap, or " + kill + "."
	}
	return "On Linux a wildcard and a specific address cannot both hold one TCP port with a listener, whatever SO_REUSEADDR says: bind addresses that do not overlap, share with SO_REUSEPORT on both sockets (same user), or " + kill + "."
}

func diagnoseTimeWait(f *events.Failure, tw []*events.Holder) Verdict {
	count, maxLeft := len(tw), int64(0)
	if f.TimeWait != nil {
		count = max(count, f.TimeWait.Count)
		maxLeft = f.TimeWait.MaxRemainingMS
	}
	for _, h := range tw {
		maxLeft = max(maxLeft, h.RemainingMS)
	}
	// What the TIME_WAIT sockets inherited from the socket that left them.
	known, allReuse := true, true
	for _, h := range tw {
		if h.ReuseAddr == nil {
			known = false
		} else if !*h.ReuseAddr {
			allReuse = false
		}
	}
	remain := "sockets remain"
	if count == 1 {
		remain = "socket remains"
	}
	only := fmt.Sprintf("Only %d TIME_WAIT %s on port %d/%s (closed connections; the last expires in %s)",
		count, remain, f.Port, f.Proto, events.Seconds(maxLeft))
	wait := fmt.Sprintf("or wait %s: TIME_WAIT lasts a fixed 60 s on Linux (net.ipv4.tcp_fin_timeout governs FIN_WAIT_2, not TIME_WAIT, and net.ipv4.tcp_tw_reuse only applies to outgoing connect(), not to bind())", events.Seconds(maxLeft))
	switch {
	case !f.Socket.ReuseAddr && known && allReuse:
		return verdict(events.CauseTimeWait, only+", and this socket did not set SO_REUSEADDR, which would have allowed the bind (the old sockets had it).",
			"Set SO_REUSEADDR on the socket before bind(), "+wait+".")
	case !f.Socket.ReuseAddr && known:
		return verdict(events.CauseTimeWait, only+"; neither this socket nor the one that left them set SO_REUSEADDR.",
			"Set SO_REUSEADDR on the listening socket of every instance — TIME_WAIT sockets keep the flag of the socket they came from, and bind() may reuse the port only when both have it — "+wait+".")
	case !f.Socket.ReuseAddr:
		return verdict(events.CauseTimeWait, only+", and this socket did not set SO_REUSEADDR.",
			"Set SO_REUSEADDR on the listening socket of every instance (bind() may reuse a port in TIME_WAIT only when the socket that left it had the flag too), "+wait+".")
	case known:
		return verdict(events.CauseTimeWait, only+", left by a socket without SO_REUSEADDR: this socket's SO_REUSEADDR cannot override them, the kernel allows the bind only when both sockets set it.",
			"Set SO_REUSEADDR in the program that left them (the listener whose connections closed), "+wait+".")
	}
	return verdict(events.CauseTimeWait, only+"; this socket set SO_REUSEADDR, so they were most likely left by a socket without it: the kernel allows the bind only when both sockets set it.",
		"Set SO_REUSEADDR in the program that left them too, "+wait+".")
}

func diagnoseNotAvail(f *events.Failure, facts Facts) Verdict {
	addr, err := netip.ParseAddr(f.Addr)
	if err != nil {
		return verdict(events.CauseAddrNotAvailable, fmt.Sprintf("The address %q is not available in the failing process's network namespace.", f.Addr), "")
	}
	addr = addr.Unmap()
	for _, a := range facts.Addrs {
		if a.Addr == addr && a.Tentative {
			return verdict(events.CauseAddrTentative, fmt.Sprintf("%s is assigned to %s but still tentative: IPv6 duplicate address detection has not finished (or found a duplicate), and bind() refuses such an address.", addr, a.Iface),
				"Retry once DAD is done (about a second), set IP_FREEBIND on the socket (or net.ipv6.ip_nonlocal_bind=1), or disable DAD on the interface (net.ipv6.conf.IFACE.accept_dad=0).")
		}
	}
	ns := "the failing process's network namespace"
	if f.Process.Netns != 0 {
		ns = fmt.Sprintf("the failing process's network namespace (%d)", f.Process.Netns)
	}
	var list []string
	for _, a := range facts.Addrs {
		list = append(list, fmt.Sprintf("%s (%s)", a.Addr, a.Iface))
	}
	assigned := "bindwatch could not list the addresses there"
	if len(list) > 0 {
		assigned = "the addresses there are " + strings.Join(list, ", ")
	}
	sysctl := "net.ipv4.ip_nonlocal_bind=1"
	if addr.Is6() {
		sysctl = "net.ipv6.ip_nonlocal_bind=1"
	}
	return verdict(events.CauseAddrNotAvailable, fmt.Sprintf("%s is not assigned to any interface in %s; %s.", addr, ns, assigned),
		fmt.Sprintf("Bind one of those addresses or the wildcard (0.0.0.0 / ::), add the address first (ip addr add … dev …, inside the container when it runs in one), or, for an address that appears later, set IP_FREEBIND on the socket (%s for the whole namespace).", sysctl))
}

func diagnoseAccess(f *events.Failure, facts Facts) Verdict {
	start := facts.UnprivilegedPortStart
	p := f.Process
	who := commName(&p)
	if start > 0 && int(f.Port) < start {
		var lacks string
		switch {
		case p.CapNetBindService == nil:
			lacks = "binding it needs CAP_NET_BIND_SERVICE"
		case !*p.CapNetBindService:
			lacks = fmt.Sprintf("%s (uid %d) does not have CAP_NET_BIND_SERVICE", who, p.UID)
		default:
			lacks = fmt.Sprintf("%s has CAP_NET_BIND_SERVICE, but not in the user namespace that owns this network namespace", who)
		}
		hint := fmt.Sprintf("Use a port ≥ %d; or grant the capability (setcap cap_net_bind_service=+ep %s, or AmbientCapabilities=CAP_NET_BIND_SERVICE in its systemd unit); or lower net.ipv4.ip_unprivileged_port_start in that network namespace.", start, orDefault(events.Escape(p.Exe), "EXECUTABLE"))
		return verdict(events.CausePrivilegedPort, fmt.Sprintf("Port %d is privileged: it is below net.ipv4.ip_unprivileged_port_start (%d) in the failing process's network namespace, and %s.", f.Port, start, lacks), hint)
	}
	if start > 0 {
		return verdict(events.CauseAccessDenied, fmt.Sprintf("bind() was refused with EACCES although port %d is not privileged there (net.ipv4.ip_unprivileged_port_start is %d): a security module (SELinux, AppArmor) or a cgroup BPF program denied it.", f.Port, start),
			"Check the audit log (ausearch -m avc, journalctl -k) and the policy for this program.")
	}
	return verdict(events.CauseAccessDenied, fmt.Sprintf("bind() was refused with EACCES: port %d may be privileged (below net.ipv4.ip_unprivileged_port_start, which bindwatch could not read), or a security module denied it.", f.Port),
		"Run it with CAP_NET_BIND_SERVICE or use a port ≥ 1024; check the audit log for denials.")
}

// commName is a process's comm as a diagnosis writes it: chosen by the
// process, so escaped (events.Escape); "a process" when unknown.
// Diagnoses and hints are sentences for people, in text and JSON alike:
// every name in them that a process controls (comm, exe, user, cgroup)
// goes in through events.Escape, the one rule for showing such strings.
func commName(p *events.Process) string {
	if c := events.Escape(p.Comm); c != "" {
		return c
	}
	return "a process"
}

// procsName names the processes owning a holder: "nginx (pid 42, user www)"
// or "nginx (pids 42, 43, 44)"; sockets without an owner are said to be so.
func procsName(h *events.Holder) string {
	ps := h.Processes
	if len(ps) == 0 {
		if h.Inode == 0 {
			return "a socket no process owns (closed, kept by the kernel)"
		}
		if h.Unowned != "" {
			return fmt.Sprintf("a socket (inode %d) %s", h.Inode, events.UnownedText(h))
		}
		return fmt.Sprintf("a socket (inode %d) whose owner could not be found", h.Inode)
	}
	var comms []string
	var pids []string
	for _, p := range ps {
		if c := events.Escape(p.Comm); c != "" && !slices.Contains(comms, c) {
			comms = append(comms, c)
		}
		pids = append(pids, strconv.Itoa(p.PID))
	}
	name := strings.Join(comms, "/")
	if name == "" {
		name = "a process"
	}
	if len(pids) > 1 {
		const shown = 5
		if len(pids) > shown {
			pids = append(pids[:shown], fmt.Sprintf("… %d in all", len(ps)))
		}
		return fmt.Sprintf("%s (pids %s)", name, strings.Join(pids, ", "))
	}
	p := ps[0]
	detail := "pid " + pids[0]
	if p.User != "" {
		detail += ", user " + events.Escape(p.User)
	} else {
		detail += fmt.Sprintf(", uid %d", p.UID)
	}
	if c := events.PlaceText(&p); c != "" {
		detail += ", " + c
	}
	return fmt.Sprintf("%s (%s)", name, detail)
}

func stateVerb(h *events.Holder) string {
	switch h.State {
	case "LISTEN":
		return "listening on"
	case "BOUND":
		return "bound, not listening, to"
	case "UNCONN":
		return "bound to"
	}
	return "in state " + h.State + " on"
}

// holdAge says how long the holder has held the port when bindwatch saw the
// bind (Since), else how long its process has run (an upper bound).
func holdAge(h *events.Holder, now time.Time) string {
	if !h.Since.IsZero() {
		return ", bound " + roughDuration(now.Sub(h.Since)) + " ago"
	}
	var oldest time.Time
	for _, p := range h.Processes {
		if !p.StartTime.IsZero() && (oldest.IsZero() || p.StartTime.Before(oldest)) {
			oldest = p.StartTime
		}
	}
	if oldest.IsZero() {
		return ""
	}
	return ", running for " + roughDuration(now.Sub(oldest))
}

func killHint(h *events.Holder) string {
	if len(h.Processes) == 0 {
		return "wait for the socket to close"
	}
	for i := range h.Processes {
		if stop := containerStop(&h.Processes[i]); stop != "" {
			return "stop the holder's container: " + stop
		}
	}
	for i := range h.Processes {
		if stop := unitStop(&h.Processes[i]); stop != "" {
			return "stop the holder's unit: " + stop
		}
	}
	var pids []string
	for _, p := range h.Processes {
		pids = append(pids, strconv.Itoa(p.PID))
	}
	return "stop the holder (its service, or kill " + strings.Join(pids, " ") + ")"
}

// containerStop is the command that stops the container p runs in, as its
// runtime spells it, or "" outside a known container: a process killed in a
// container is restarted by its runtime or its pod's controller, and the
// port is held again. Names are bytes whoever named the container chose:
// shown by the escaping rule, and quoted for a shell when they hold more
// than a runtime's own name characters.
func containerStop(p *events.Process) string {
	c := &p.Container
	if p.Pod.Name != "" {
		ns := p.Pod.Namespace
		if ns == "" {
			ns = "default"
		}
		return fmt.Sprintf("kubectl -n %s delete pod %s (pid %d runs in it; a Deployment or other controller that owns the pod starts a new one: scale that down to stop it for good, or change the port in its spec)",
			shellWord(ns), shellWord(p.Pod.Name), p.PID)
	}
	name := c.Name
	if name == "" {
		name = c.ID
	}
	if name == "" {
		return ""
	}
	switch c.Runtime {
	case "podman", "docker":
		return fmt.Sprintf("%s stop %s (pid %d runs in it)", c.Runtime, shellWord(name), p.PID)
	case "cri-o", "containerd":
		if c.ID == "" {
			return ""
		}
		return fmt.Sprintf("crictl stop %s (pid %d runs in it)", shellWord(c.ID), p.PID)
	}
	return ""
}

// unitStop is the command that stops the systemd service p runs in, or ""
// when p runs in none: systemd restarts a killed main process when its
// unit says Restart=, and a unit's other processes are its to stop. A
// scope (a login session's, a container's) is no service: stopping it
// would end the whole session, so its processes get no systemctl hint.
func unitStop(p *events.Process) string {
	stop := ServiceStop(p)
	if stop == "" {
		return ""
	}
	return fmt.Sprintf("%s (pid %d runs in it; do not kill its main process: systemd may start it again)", stop, p.PID)
}

// ServiceStop is the command that stops the systemd service p runs in,
// "systemctl stop nginx.service", or "" when p runs in no service (see
// unitStop). The unit's name is escaped and quoted for a shell.
func ServiceStop(p *events.Process) string {
	if unit := serviceUnit(p); unit != "" {
		return Systemctl(p) + " stop " + unit
	}
	return ""
}

// serviceUnit is the systemd service p runs in, shell-quoted, or "": a
// service, not a user's service manager itself (user@UID.service of the
// system), nor a scope.
func serviceUnit(p *events.Process) string {
	if !strings.HasSuffix(p.Unit, ".service") || strings.HasPrefix(p.Unit, "user@") && p.UnitManager == "" {
		return ""
	}
	return shellWord(p.Unit)
}

// Systemctl is the systemctl command that manages p's unit: "systemctl"
// for the system's manager, "systemctl --user -M 1000@" for a user's.
func Systemctl(p *events.Process) string {
	if p.UnitManager == "" {
		return "systemctl"
	}
	uid := strings.TrimSuffix(strings.TrimPrefix(p.UnitManager, "user@"), ".service")
	if _, err := strconv.ParseUint(uid, 10, 32); err != nil {
		return "systemctl --user"
	}
	return "systemctl --user -M " + uid + "@"
}

// shellWord is s escaped (events.Escape) and, unless it is made only of
// the characters container runtimes allow in names, single-quoted for a
// shell: a hint is copied into terminals.
func shellWord(s string) string {
	e := events.Escape(s)
	safe := e != "" && strings.IndexFunc(e, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
	}) < 0
	if safe && e[0] != '-' {
		return e
	}
	return "'" + strings.ReplaceAll(e, "'", `'\''`) + "'"
}

func familyName(f string) string {
	if f == "ipv6" {
		return "IPv6"
	}
	return "IPv4"
}

func onOff(b *bool) string {
	switch {
	case b == nil:
		return "unknown"
	case *b:
		return "on"
	}
	return "off"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// roughDuration writes a duration the way people say it: "3h12m", "45s".
func roughDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second: // restart races are a matter of milliseconds
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
}
