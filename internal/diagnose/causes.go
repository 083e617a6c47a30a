package diagnose

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// This file diagnoses the holders that are not "another program listening":
// an outgoing connection that took the port from the ephemeral range, the
// failing process itself or a sibling in its job, and the proxies and
// managers that hold ports on behalf of others.

// outgoing reports whether h is a connection that the kernel gave port as
// its local port from the ephemeral range: port is in the failing
// namespace's ip_local_port_range and not reserved, and h is connected (or
// in TIME_WAIT) to a peer whose port lies outside the range. A connection
// accepted by a listener on port has a client's port as its peer — itself
// from some ephemeral range — while a connection made from this side has
// the service's port as its peer.
func outgoing(h *events.Holder, port uint16, eph EphemeralPorts) bool {
	if !eph.Exposed(int(port)) || h.PeerPort == 0 {
		return false
	}
	switch h.State {
	case "LISTEN", "BOUND", "UNCONN", "CLOSE":
		return false
	}
	return !eph.InRange(int(h.PeerPort))
}

// diagnoseEphemeral explains an outgoing connection holding the port.
func diagnoseEphemeral(f *events.Failure, h *events.Holder, facts Facts, now time.Time) Verdict {
	eph := facts.Ephemeral
	conn := fmt.Sprintf("an outgoing connection from %s to %s (%s", events.HostPort(h.Addr, h.Port), events.HostPort(h.PeerAddr, h.PeerPort), h.State)
	switch {
	case h.State == "TIME_WAIT":
		conn += fmt.Sprintf(", closed; the kernel keeps it %s more)", events.Seconds(h.RemainingMS))
	case len(h.Processes) > 0:
		conn += ") of " + procsName(h) + holdAge(h, now)
	default:
		conn += ")"
	}
	ns := "this network namespace"
	if !facts.OwnNetns && f.Process.Netns != 0 {
		ns = fmt.Sprintf("the failing process's network namespace (%d)", f.Process.Netns)
	}
	diagnosis := fmt.Sprintf("Port %d/%s is taken by %s: %d lies in the ephemeral port range of %s, net.ipv4.ip_local_port_range %s, and is not in net.ipv4.ip_local_reserved_ports, so the kernel gave it to a connect() as its local port. Such collisions come and go with outgoing traffic: an intermittent EADDRINUSE.",
		f.Port, f.Proto, conn, f.Port, ns, eph.RangeText())
	setting := eph.ReserveSetting(int(f.Port))
	hint := fmt.Sprintf("Reserve the port so that connect() never picks it: `%s`", sysctlCommand(f, facts, setting))
	if facts.OwnNetns {
		hint += " (persist it in /etc/sysctl.d/)"
	} else {
		hint += fmt.Sprintf(" (a container sets it at its start: docker run --sysctl %s, or a pod's securityContext.sysctls)", setting)
	}
	hint += fmt.Sprintf("; or give the service a port outside %s. The port is free again once that connection closes", eph.RangeText())
	if h.State != "TIME_WAIT" {
		hint += " (and its TIME_WAIT, up to 60 s, ends)"
	}
	if h.ReuseAddr == nil || !*h.ReuseAddr {
		hint += "; SO_REUSEADDR on this socket does not help, since the connection's socket does not set it"
	}
	return verdict(events.CauseEphemeralPort, diagnosis, hint+".")
}

// sysctlCommand is the command that applies a net sysctl setting in the
// failing process's network namespace: net sysctls are per namespace.
func sysctlCommand(f *events.Failure, facts Facts, setting string) string {
	if facts.OwnNetns || f.Process.PID <= 0 {
		return "sysctl -w " + setting
	}
	return fmt.Sprintf("nsenter --net=/proc/%d/ns/net sysctl -w %s", f.Process.PID, setting)
}

// diagnoseOwnJob explains a holder that is the failing process itself, or
// another process started by the same traced command.
func diagnoseOwnJob(f *events.Failure, h *events.Holder, facts Facts, now time.Time) (Verdict, bool) {
	self := slices.IndexFunc(h.Processes, func(p events.Process) bool { return p.PID == f.Process.PID }) >= 0
	if self && outgoing(h, f.Port, facts.Ephemeral) {
		// Its own connect() took the port from the ephemeral range before
		// it listened: binding it once would not help, reserving it does.
		return diagnoseEphemeral(f, h, facts, now), true
	}
	if self {
		fd := ""
		if h.FD != nil {
			fd = fmt.Sprintf(" (its fd %d)", *h.FD)
		}
		me := fmt.Sprintf("%s (pid %d)", commName(&f.Process), f.Process.PID)
		if f.Syscall == "listen" {
			return verdict(events.CauseSelfConflict,
				fmt.Sprintf("listen() failed because this same process, %s, already listens on %s with another socket%s; both were bound with SO_REUSEADDR, which lets sockets share a port only until one of them listens.", me, events.HostPort(h.Addr, h.Port), fd),
				"Listen on the port once and share that socket between the parts of the program that need it, or give the second listener another port."), true
		}
		if o, cause := overlapKind(f, h); cause == events.CauseDualStack && f.Syscall == "bind" {
			return verdict(events.CauseSelfConflict,
				fmt.Sprintf("%s/%s conflicts with %s, which this same process, %s, holds with another socket%s: %s.", events.HostPort(f.Addr, f.Port), f.Proto, events.HostPort(h.Addr, h.Port), me, fd, o),
				fmt.Sprintf("Set IPV6_V6ONLY=1 on the IPv6 socket before bind() so that the two sockets can coexist (nginx: `listen [::]:%d ipv6only=on;`, the default; sysctl net.ipv6.bindv6only sets the system default), or keep only the dual-stack [::] socket, which serves IPv4 too.", f.Port)), true
		}
		return verdict(events.CauseSelfConflict,
			fmt.Sprintf("Port %d/%s is held by this same process, %s, %s %s with another socket%s: it binds the port twice — the port twice in its configuration, overlapping listen addresses, or a library and the application both binding it.", f.Port, f.Proto, me, stateVerb(h), events.HostPort(h.Addr, h.Port), fd),
			"Bind the port once and share that socket (look for the port twice in its configuration, and for a library that opens its own listener), or give the second socket another port."), true
	}
	if facts.Job == nil || facts.Job.Contains == nil {
		return Verdict{}, false
	}
	for _, p := range h.Processes {
		if p.PID == f.Process.PID || !facts.Job.Contains(p.PID) {
			continue
		}
		return verdict(events.CauseSameJob,
			fmt.Sprintf("Port %d/%s is held by %s (pid %d), %s %s, started by the same command as this process: %s (pid %d) and %s (pid %d) both run under %s — two parts of one job (two tests of one suite, two services of one setup) want the same port.",
				f.Port, f.Proto, commName(&p), p.PID, stateVerb(h), events.HostPort(h.Addr, h.Port),
				commName(&f.Process), f.Process.PID, commName(&p), p.PID, facts.Job.Command),
			"Give each part its own port (tests: bind port 0 and read the port back with getsockname(), or derive it from the test's index), or run them one after the other so that the first has exited before the second binds."), true
	}
	return Verdict{}, false
}

// diagnoseJobGone explains a holder the kernel recorded at the failure
// that has exited since, when it was part of the same traced command: it
// has left the command's tree, but its parent (when it took the port) is
// still in it.
func diagnoseJobGone(f *events.Failure, h *events.Holder, facts Facts) (Verdict, bool) {
	if facts.Job == nil || facts.Job.Contains == nil {
		return Verdict{}, false
	}
	for _, p := range h.Processes {
		if p.PID == f.Process.PID || !(facts.Job.Contains(p.PID) || (p.PPID > 1 && facts.Job.Contains(p.PPID))) {
			continue
		}
		return verdict(events.CauseSameJob,
			fmt.Sprintf("%s/%s was held at the moment of the failure by %s (pid %d), started by the same command as this process (%s, under %s), which has exited since: one part of the job had not let go of the port when the next bound it.",
				events.HostPort(f.Addr, f.Port), f.Proto, commName(&p), p.PID, commName(&f.Process), facts.Job.Command),
			"Make each part wait until the previous one has exited (and closed its sockets) before binding, or give each part its own port (tests: bind port 0 and read the port back with getsockname())."), true
	}
	return Verdict{}, false
}

// diagnoseManager explains a holder that holds the port on behalf of
// others: a container proxy or runtime, kube-proxy, a service manager doing
// socket activation, sshd, inetd. They are recognised by their comm (and
// for docker-proxy its arguments), which the holder's owner controls: the
// diagnosis only ever explains, it never decides what gets stopped.
//
// The comm decides, and the executable confirms: a verdict whose holder's
// executable is not the manager's own program is only likely.
func diagnoseManager(f *events.Failure, h *events.Holder, heldBy string, facts Facts) (Verdict, bool) {
	for i := range h.Processes {
		p := &h.Processes[i]
		v, ok := managerVerdict(f, p, heldBy, facts)
		if !ok {
			continue
		}
		exe := path.Base(strings.TrimSuffix(p.Exe, " (deleted)"))
		if p.Exe == "" || !strings.HasPrefix(exe, strings.TrimSuffix(p.Comm, "-")) && exe != "init" {
			v = likely(v)
		}
		return v, true
	}
	return Verdict{}, false
}

func managerVerdict(f *events.Failure, p *events.Process, heldBy string, facts Facts) (Verdict, bool) {
	{
		switch comm := p.Comm; {
		case comm == "docker-proxy":
			return dockerProxy(f, p, heldBy), true
		case strings.HasPrefix(comm, "containerd-shim") || comm == "conmon" || comm == "rootlessport":
			where := "a container"
			if p.ContainerID != "" {
				where = "container " + p.ContainerID[:min(12, len(p.ContainerID))]
			}
			return verdict(events.CauseContainerRuntime,
				heldBy+fmt.Sprintf(": %s is part of a container runtime (containerd's shim, podman's conmon or its rootless port forwarder) and holds the port for %s — a published port, or a socket the container's process left it.", comm, where),
				fmt.Sprintf("Find the container: docker ps --filter publish=%d, podman ps --filter publish=%d, or crictl ps; stop it or publish another host port. Do not kill the runtime's process itself while its container runs.", f.Port, f.Port)), true
		case comm == "kube-proxy":
			nodePort := ""
			if f.Port >= 30000 && f.Port <= 32767 {
				nodePort = fmt.Sprintf(" (%d lies in the default NodePort range, 30000–32767)", f.Port)
			}
			return verdict(events.CauseKubeProxy,
				heldBy+fmt.Sprintf(": kube-proxy holds the port open for a Kubernetes NodePort service%s, so that no other program on the node takes it.", nodePort),
				fmt.Sprintf("Find the service: kubectl get svc -A | grep ':%d/'; change its nodePort, or give this program a port outside the NodePort range (kube-apiserver --service-node-port-range).", f.Port)), true
		case comm == "systemd" && (p.PID == 1 || p.NSPID == 1 || userManager(p)):
			return socketActivation(f, p, heldBy, facts.SocketUnitNote), true
		case comm == "sshd" || comm == "sshd-session":
			if p.PPID == 1 || p.NSPID == 1 {
				return verdict(events.CauseSSHD, heldBy+": the SSH daemon listens on this port (its Port or ListenAddress in /etc/ssh/sshd_config).",
					"Give this program another port, or change sshd's Port/ListenAddress and restart sshd (keep a session open while you do)."), true
			}
			return verdict(events.CauseSSHD, heldBy+fmt.Sprintf(": a session of the SSH daemon holds it — a port forward that %s asked for (ssh -R %d:… or -L on this host), open while that session lasts.", userOf(p), f.Port),
				fmt.Sprintf("Ask the user to end the forward, or end that session (kill %d); sshd's AllowTcpForwarding and PermitListen decide who may forward which ports.", p.PID)), true
		case comm == "inetd" || comm == "xinetd":
			return verdict(events.CauseInetd, heldBy+fmt.Sprintf(": %s listens on the port for a service it starts for each connection.", comm),
				fmt.Sprintf("Disable that service in %s's configuration (/etc/inetd.conf, /etc/xinetd.d/) and reload it (kill -HUP %d), or give this program another port.", comm, p.PID)), true
		case comm == "systemd-socket-" || path.Base(p.Exe) == "systemd-socket-activate":
			// The kernel keeps 15 bytes of a comm: systemd-socket-activate.
			return verdict(events.CauseSocketActivation,
				heldBy+": systemd-socket-activate listens on it and passes the socket to the program it starts (socket activation, by hand rather than by a .socket unit), so the port stays held while that program is not running.",
				fmt.Sprintf("Stop that systemd-socket-activate (pid %d; it belongs to no unit: SIGTERM it), or give this program another port; a program meant to serve the port should take the socket it passes (LISTEN_FDS, sd_listen_fds()) instead of binding it.", p.PID)), true
		}
	}
	return Verdict{}, false
}

// dockerProxy explains a docker-proxy holder, naming the published
// container port when its arguments say it (-container-ip, -container-port).
func dockerProxy(f *events.Failure, p *events.Process, heldBy string) Verdict {
	var ip netip.Addr
	cport := 0
	for i := 0; i+1 < len(p.Cmdline); i++ {
		switch strings.TrimLeft(p.Cmdline[i], "-") {
		case "container-ip":
			ip, _ = netip.ParseAddr(p.Cmdline[i+1])
		case "container-port":
			cport, _ = strconv.Atoi(p.Cmdline[i+1])
		}
	}
	published := "a container's port on it"
	if cport > 0 && cport < 65536 {
		published = fmt.Sprintf("port %d of a container", cport)
		if ip.IsValid() {
			published += " (" + ip.String() + ")"
		}
		published += fmt.Sprintf(" on it, as docker run -p %d:%d does", f.Port, cport)
	}
	if c := p.PublishesFor; c != nil && (c.Name != "" || c.ID != "") {
		name := c.Name
		if name == "" {
			name = c.ID
		}
		of := "container " + events.Escape(name)
		if c.Image != "" {
			of += " (image " + events.Escape(c.Image) + ")"
		}
		return verdict(events.CauseDockerProxy,
			heldBy+fmt.Sprintf(": Docker publishes port %d of %s on it, as docker run -p %d:%d does.", cport, of, f.Port, cport),
			fmt.Sprintf("Stop the container: docker stop %s, or publish it on another host port (docker run -p); do not kill docker-proxy while its container runs.", shellWord(name)))
	}
	return verdict(events.CauseDockerProxy,
		heldBy+fmt.Sprintf(": Docker publishes %s.", published),
		fmt.Sprintf("Find the container: docker ps --filter publish=%d; stop it or publish another host port. docker-proxy is known to outlive its container: if no container publishes %d, restart the Docker daemon (systemctl restart docker) or kill %d.", f.Port, f.Port, p.PID))
}

// socketActivation explains systemd holding a listener: a socket unit,
// named when the manager said which (p.SocketUnit, internal/enrich), or
// else found by the user, with note saying why bindwatch did not name it.
func socketActivation(f *events.Failure, p *events.Process, heldBy, note string) Verdict {
	manager, ctl := "the service manager (pid 1)", "systemctl"
	switch {
	case userManager(p):
		manager = fmt.Sprintf("the service manager of %s (systemd --user)", userOf(p))
		ctl = "systemctl --user"
		if p.User != "" {
			ctl = fmt.Sprintf("systemctl --user -M %s@", events.Escape(p.User))
		}
	case p.PID != 1:
		manager = "the service manager of a container (pid 1 in its own pid namespace)"
		ctl = fmt.Sprintf("nsenter --target %d --all systemctl", p.PID)
	}
	if unit := p.SocketUnit; unit != "" && p.PID == 1 && !userManager(p) {
		u := shellWord(unit)
		return verdict(events.CauseSocketActivation,
			heldBy+fmt.Sprintf(": %s listens on it for %s and starts that unit's service on the first connection (socket activation), so the port stays held while the service is stopped.", manager, events.Escape(unit)),
			fmt.Sprintf("Stop the socket unit, not the service: %s stop %s (and %s disable %s so that it does not come back); stopping its service alone leaves systemd listening.", ctl, u, ctl, u))
	}
	why := ""
	if note != "" {
		why = " (bindwatch could not name the unit: " + strings.TrimSuffix(note, ".") + ".)"
	}
	return verdict(events.CauseSocketActivation,
		heldBy+fmt.Sprintf(": %s listens on it for a socket unit and starts the unit's service on the first connection (socket activation), so the port stays held while the service is stopped.%s", manager, why),
		fmt.Sprintf("Stop the socket unit, not the service: find it with `%s list-sockets | grep %d`, then `%s stop NAME.socket` (and `%s disable NAME.socket` so that it does not come back); stopping NAME.service alone leaves systemd listening.", ctl, f.Port, ctl, ctl))
}

// userManager reports whether p looks like a per-user systemd instance.
func userManager(p *events.Process) bool {
	return p.UID != 0 || slices.Contains(p.Cmdline, "--user")
}

func userOf(p *events.Process) string {
	if p.User != "" {
		return "user " + events.Escape(p.User)
	}
	return fmt.Sprintf("uid %d", p.UID)
}
