package events

// Causes: the Failure.Cause values, why the kernel refused a bind() or
// listen(). docs/causes.md says how each is recognised and what its hint
// advises; docs/schema.json lists them. A new cause is added here, there
// and in Causes, never renamed: SIEM rules count incidents by these names.
const (
	// EADDRINUSE
	CauseEphemeralPort      = "ephemeral_port"      // an outgoing connection took the port as its local port
	CauseEphemeralExhausted = "ephemeral_exhausted" // port 0: no free port left in ip_local_port_range
	CauseSelfConflict       = "self_conflict"       // the failing process holds the port itself
	CauseSameJob            = "same_job"            // another process of the same traced command holds it
	CauseLeftover           = "leftover"            // a process left over from an instance that is gone holds it
	CauseAlreadyRunning     = "already_running"     // the same program is running and serving the port
	CauseRestartRace        = "restart_race"        // the holder exited right after the failure
	CauseHolderGone         = "holder_gone"         // nothing holds it any more
	CauseTimeWait           = "time_wait"           // only TIME_WAIT sockets, and SO_REUSEADDR is missing
	CauseDualStack          = "dual_stack"          // an IPv6 :: socket without IPV6_V6ONLY covers IPv4
	CauseAddressOverlap     = "address_overlap"     // a wildcard and a specific address overlap
	CauseReusePortMissing   = "reuseport_missing"   // only one of the two sockets set SO_REUSEPORT
	CauseReusePortUser      = "reuseport_user"      // both set SO_REUSEPORT, under different users
	CauseBoundNotListening  = "bound_not_listening" // a TCP socket bound but not listening holds it
	CauseListenConflict     = "listen_conflict"     // listen() on a port shared by SO_REUSEADDR binds
	CauseDockerProxy        = "docker_proxy"        // docker-proxy holds a published container port
	CauseContainerRuntime   = "container_runtime"   // containerd-shim or conmon holds it for a container
	CauseKubeProxy          = "kube_proxy"          // kube-proxy holds it (a NodePort)
	CauseSocketActivation   = "socket_activation"   // systemd (pid 1 or a user manager) holds a socket unit's listener
	CauseSSHD               = "sshd"                // sshd holds it: a port forward of a session, or its own Port
	CauseInetd              = "inetd"               // inetd/xinetd listens for a service it starts on demand
	CausePortInUse          = "port_in_use"         // another program holds it
	// EADDRNOTAVAIL
	CauseAddrTentative    = "addr_tentative"     // IPv6 address still in duplicate address detection
	CauseAddrNotAvailable = "addr_not_available" // address not assigned in the namespace
	// EACCES
	CausePrivilegedPort = "privileged_port" // below ip_unprivileged_port_start, no CAP_NET_BIND_SERVICE
	CauseAccessDenied   = "access_denied"   // a security module or cgroup BPF program refused
	// EINVAL
	CauseAlreadyBound = "already_bound" // bind() on a socket already bound
	CauseCannotListen = "cannot_listen" // listen() on a connected or shut-down socket
)

// Causes lists every cause value (docs/schema.json and docs/causes.md list the same).
var Causes = []string{
	CauseEphemeralPort, CauseEphemeralExhausted, CauseSelfConflict, CauseSameJob, CauseLeftover, CauseAlreadyRunning,
	CauseRestartRace, CauseHolderGone, CauseTimeWait, CauseDualStack, CauseAddressOverlap,
	CauseReusePortMissing, CauseReusePortUser, CauseBoundNotListening, CauseListenConflict,
	CauseDockerProxy, CauseContainerRuntime, CauseKubeProxy, CauseSocketActivation, CauseSSHD,
	CauseInetd, CausePortInUse, CauseAddrTentative, CauseAddrNotAvailable, CausePrivilegedPort,
	CauseAccessDenied, CauseAlreadyBound, CauseCannotListen,
}

// Confidences: the Failure.Confidence values, how firmly the evidence
// supports the cause.
const (
	// ConfidenceCertain: the kernel's own facts decide it (socket states,
	// options, addresses, which process took the port and how it ended).
	ConfidenceCertain = "certain"
	// ConfidenceLikely: the evidence supports the cause without proving
	// it — a name the process chose itself (comm), or an orphan whose
	// instance may still be wanted. The diagnosis says what is not known.
	ConfidenceLikely = "likely"
)
