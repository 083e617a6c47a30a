// Package events defines every record bindwatch writes — a failed
// bind()/listen() and the process and sockets on both sides of it, the
// tracing session's start, repeats, lost and stop, and the records of who,
// free, wait-free and doctor — and turns them into the text and JSON lines
// that users read and ship. It is a leaf: it knows nothing about BPF or
// /proc. The tracer fills a Failure from a kernel record, resolve adds what
// only user space can find, and this package says it.
package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is the schema version carried by every JSON record. Bump it when a
// field changes meaning or disappears; adding a field does not bump it.
const Version = 1

// MaxRecordBytes is the most bytes a JSON record the tracer writes takes
// (its newline aside), and what bindwatch report reads: a process
// controls its command line (up to 2 MB) and can share a socket with
// thousands of processes, so the tracer shortens a record that would be
// larger (sink.Fitted), and report reads every record up to it.
const MaxRecordBytes = 1 << 20

// Record types, the "type" field of every JSON line.
const (
	TypeStart   = "start"
	TypeFailure = "bind_failure"
	TypeRepeats = "repeats"
	TypeLost    = "lost"
	TypeStop    = "stop"
	// TypeOutputLost is written by an output (file, standard output,
	// syslog) that could not write some records, in the next write that
	// gets through.
	TypeOutputLost = "output_lost"
)

// Header is how a record starts: its type (one of the Type constants),
// the schema version, when it happened and the host it happened on. Each
// record type embeds it, so its JSON fields come first, in this order.
// Incident, Spread and Doctor, which have no single time (or host), carry
// their own Type and Version instead.
type Header struct {
	Type    string    `json:"type"`
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
}

// CmdlineGap stands, in a Process's Cmdline, for the arguments between the
// head and the tail of a command line too long for the kernel to capture
// whole (Process.CmdlineTruncated is set).
const CmdlineGap = "…"

// Holder sources: how bindwatch knows a holder.
const (
	// SeenLive: the socket was still there when bindwatch looked (sock_diag).
	SeenLive = "seen_live"
	// Recorded: captured in the kernel when the address was bound, and
	// confirmed still bound at the moment of the failure; gone since.
	Recorded = "recorded"
)

// Failure is one failed bind() or listen(): who failed, on what, and — once
// resolved — who holds the address and what to do about it.
type Failure struct {
	Header
	Backend string `json:"backend"`
	// Hook names the kernel hook that saw the failure, e.g.
	// "tracepoint/syscalls/sys_exit_bind" or "fexit/inet_csk_get_port".
	Hook string `json:"hook"`
	// Syscall is "bind" or "listen", or — an implicit bind, the kernel
	// picking a local port itself — "connect", "sendto" or "sendmsg"
	// (the kernel-function backends see a UDP sendto() as "sendmsg").
	Syscall   string  `json:"syscall"`
	Errno     string  `json:"errno"`      // "EADDRINUSE"
	ErrnoCode int     `json:"errno_code"` // 98
	Proto     string  `json:"proto"`      // "tcp", "udp", "sctp", "raw", …
	Family    string  `json:"family"`     // "ipv4" or "ipv6"
	Addr      string  `json:"addr"`       // requested address, "0.0.0.0", "::", "::ffff:10.0.0.1"
	Port      uint16  `json:"port"`       // requested port (host order)
	Socket    Socket  `json:"socket"`
	Process   Process `json:"process"`
	// Destination is where an implicit bind's call was going (connect,
	// sendto, sendmsg); absent for bind() and listen().
	Destination *Destination `json:"destination,omitempty"`
	// LocalPorts is, for an implicit bind, how the namespace's ephemeral
	// range was used when bindwatch looked: toward the destination (TCP),
	// or at all (UDP, whose autobind needs a port no socket has).
	LocalPorts *LocalPorts `json:"local_ports,omitempty"`

	// Holders are the sockets that conflict with the requested address, with
	// the processes that own them. Empty when none was found (for example
	// EADDRNOTAVAIL, or EACCES on a free port).
	Holders  []Holder  `json:"holders"`
	TimeWait *TimeWait `json:"time_wait,omitempty"`
	// Cause names why the kernel refused, one of the Cause* values, so
	// that incidents can be counted by cause; absent when undiagnosed.
	Cause string `json:"cause,omitempty"`
	// Confidence is how firmly the evidence supports Cause:
	// ConfidenceCertain or ConfidenceLikely; absent when undiagnosed.
	Confidence string `json:"confidence,omitempty"`
	// Diagnosis says in one sentence why the kernel refused; Hint what to do.
	Diagnosis string `json:"diagnosis,omitempty"`
	Hint      string `json:"hint,omitempty"`
	// ResolveError says why user space could not add its live view (the
	// holders from sock_diag, process details from /proc): the record then
	// holds what the kernel captured, and a diagnosis made from that alone.
	ResolveError string `json:"resolve_error,omitempty"`
}

// Destination is the remote end of a connect() or sendto() whose local
// port the kernel could not pick.
type Destination struct {
	IP   string `json:"ip"`
	Port uint16 `json:"port"`
}

// LocalPorts is the use of a network namespace's ephemeral port range
// that an implicit bind found used up.
type LocalPorts struct {
	// Range is net.ipv4.ip_local_port_range, "40000–40003".
	Range string `json:"range"`
	// Reserved is net.ipv4.ip_local_reserved_ports as the kernel prints
	// it; absent when none.
	Reserved string `json:"reserved,omitempty"`
	// Usable counts the ports of the range not reserved.
	Usable int `json:"usable"`
	// InUse counts the usable ports held: toward the destination by a
	// connection (any state, TIME_WAIT included) or by a listening or
	// bound socket, which no connect() may share (TCP); by any socket (UDP).
	InUse int `json:"in_use"`
	// Owners hold them, the most ports first, at most LocalPortOwnersMax.
	Owners []PortOwner `json:"owners"`
	// MoreOwners counts the owners not listed.
	MoreOwners int `json:"more_owners,omitempty"`
}

// LocalPortOwnersMax bounds LocalPorts.Owners.
const LocalPortOwnersMax = 8

// PortOwner is who holds some of the ports of LocalPorts: the processes
// that have the sockets open, or none (TIME_WAIT, a socket no process has).
type PortOwner struct {
	// PIDs have the sockets open (a socket shared after fork() names
	// each); empty for sockets of no process.
	PIDs []int  `json:"pids"`
	Comm string `json:"comm,omitempty"`
	Unit string `json:"unit,omitempty"`
	// Ports counts the ports they hold, States how many are in each state.
	Ports  int            `json:"ports"`
	States map[string]int `json:"states"`
}

// Socket is the failing socket's options at the moment of failure.
type Socket struct {
	ReuseAddr bool `json:"reuseaddr"`
	ReusePort bool `json:"reuseport"`
	// V6Only is IPV6_V6ONLY; absent for IPv4 sockets.
	V6Only *bool `json:"v6only,omitempty"`
	// Freebind is IP_FREEBIND (or IP_TRANSPARENT), which allows binding an
	// address the host does not have.
	Freebind bool `json:"freebind"`
	// BoundDev is the SO_BINDTODEVICE interface name, "" when unbound.
	BoundDev      string `json:"bound_dev"`
	BoundDevIndex int    `json:"bound_dev_index,omitempty"`
}

// Process describes one process: the one that failed, or one that owns a
// holding socket. Fields that could not be known are empty and omitted.
type Process struct {
	PID         int      `json:"pid"`
	TID         int      `json:"tid,omitempty"`
	PPID        int      `json:"ppid"`
	UID         uint32   `json:"uid"`
	GID         *uint32  `json:"gid,omitempty"`
	User        string   `json:"user,omitempty"`
	Comm        string   `json:"comm"`
	Exe         string   `json:"exe,omitempty"`
	Cmdline     []string `json:"cmdline,omitempty"`
	Cgroup      string   `json:"cgroup,omitempty"`
	CgroupID    uint64   `json:"cgroup_id,omitempty"`
	ContainerID string   `json:"container_id,omitempty"`
	// Container and Pod name what the process runs in, from the cgroup
	// path and the container runtime's state on disk (internal/enrich).
	Container Container `json:"container,omitzero"`
	Pod       Pod       `json:"pod,omitzero"`
	// PublishesFor is, for a docker-proxy, the running container whose
	// port it publishes: the one docker's state gives the proxy's
	// -container-ip and -container-port, published on its -host-port
	// (internal/enrich). The proxy itself runs on the host, not in it.
	PublishesFor *Container `json:"publishes_for,omitempty"`
	// Unit is the systemd unit the process runs in, from its cgroup path
	// (internal/enrich.UnitOf): "nginx.service", "session-3.scope".
	// UnitManager is the user's service manager a user unit belongs to,
	// "user@1000.service"; "" for a unit of the system's manager.
	Unit        string `json:"unit,omitempty"`
	UnitManager string `json:"unit_manager,omitempty"`
	// SocketUnit is, for the system's service manager (pid 1) holding a
	// socket, the socket unit it listens on that address for
	// ("nginx.socket"), as that manager answered (systemctl
	// list-sockets) when the failure was resolved.
	SocketUnit string `json:"socket_unit,omitempty"`
	Netns      uint32 `json:"netns,omitempty"`
	// NetnsCookie is the kernel's cookie of that network namespace, on a
	// failing process (Linux 5.12+; absent before): the kernel reuses a
	// freed namespace's inode (Netns), never its cookie, so a failure in
	// a new namespace with a dead one's inode is another incident.
	NetnsCookie uint64    `json:"netns_cookie,omitempty"`
	StartTime   time.Time `json:"start_time,omitzero"`
	// OrigPPID is the parent a holder's process had when it took the port
	// (listen() for TCP, bind() for UDP; recorded by the kernel), present
	// only when that parent has exited since and the process was
	// reparented to init or a child subreaper.
	OrigPPID int `json:"orig_ppid,omitempty"`
	// OrigParentExit is how that parent (OrigPPID) ended, where the kernel
	// saw it: a daemon's launcher exits with status 0 moments after it
	// forks, a supervisor that was killed leaves an orphan.
	OrigParentExit *Exit `json:"orig_parent_exit,omitempty"`
	// Exit is how the process ended, where the kernel saw it: set on a
	// holder's BoundBy, the process that took the port and has exited.
	Exit *Exit `json:"exit,omitempty"`
	// NSPID is the pid the process has in its own pid namespace, present
	// when it differs from PID (a container's or a sandbox's pid 1).
	NSPID int `json:"ns_pid,omitempty"`
	// CapNetBindService tells whether the process had CAP_NET_BIND_SERVICE
	// in its effective set when it failed (failing process only).
	CapNetBindService *bool `json:"cap_net_bind_service,omitempty"`

	// CmdlineRedacted says secrets were removed from Cmdline (and from
	// wherever else this process's record repeated them): see
	// internal/redact.
	CmdlineRedacted bool `json:"cmdline_redacted,omitempty"`
	// CmdlineTruncated says Cmdline is not the whole command line: the
	// kernel captured its head and tail, with "…" for what lies between,
	// and it could not be completed from /proc (the process had exited or
	// no longer had the same command line).
	CmdlineTruncated bool `json:"cmdline_truncated,omitempty"`
}

// Exit is how a process ended, as the kernel saw it when its last thread
// exited.
type Exit struct {
	Time time.Time `json:"time"`
	// Code is the exit status it gave (exit(), a return from main);
	// absent when a signal killed it.
	Code *int `json:"code,omitempty"`
	// Signal is the signal that killed it, "SIGKILL"; absent when it
	// exited by itself.
	Signal string `json:"signal,omitempty"`
}

// Container is the container a process runs in. Every field is as the
// runtime or the cgroup path spelled it: bytes that whoever named the
// container chose.
type Container struct {
	// Runtime is "docker", "containerd", "cri-o" or "podman".
	Runtime string `json:"runtime,omitempty"`
	ID      string `json:"id,omitempty"`
	// Name is the runtime's name for it; for a Kubernetes pod's container,
	// the container's name in the pod spec.
	Name  string `json:"name,omitempty"`
	Image string `json:"image,omitempty"`
}

// Pod is the Kubernetes pod a container belongs to.
type Pod struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	UID       string `json:"uid,omitempty"`
}

// Holder is a socket that conflicts with a failed request.
type Holder struct {
	Source string `json:"source"` // SeenLive or Recorded
	Proto  string `json:"proto"`
	State  string `json:"state"` // "LISTEN", "TIME_WAIT", "BOUND", "ESTABLISHED", "UNCONN", …
	Addr   string `json:"addr"`
	Port   uint16 `json:"port"`
	// PeerAddr and PeerPort are the remote end of a connected socket.
	PeerAddr string `json:"peer_addr,omitempty"`
	PeerPort uint16 `json:"peer_port,omitempty"`
	Inode    uint64 `json:"inode,omitempty"`
	UID      uint32 `json:"uid"`
	Netns    uint32 `json:"netns,omitempty"`
	// ReuseAddr/ReusePort are the holder's SO_REUSEADDR/SO_REUSEPORT, where known.
	ReuseAddr *bool `json:"reuseaddr,omitempty"`
	ReusePort *bool `json:"reuseport,omitempty"`
	V6Only    *bool `json:"v6only,omitempty"`
	// RemainingMS is how long a TIME_WAIT socket has left.
	RemainingMS int64 `json:"remaining_ms,omitempty"`
	// Since is when the address was bound, where bindwatch saw it happen.
	Since     time.Time `json:"since,omitzero"`
	Processes []Process `json:"processes"`
	// FD is the socket's file descriptor in the failing process, present
	// when that process holds the socket itself (a self-conflict).
	FD *int `json:"fd,omitempty"`
	// BoundBy is the process that took the port with this socket (listen()
	// for TCP, bind() for UDP; recorded by the kernel), present when it has
	// exited and left the socket to the processes that inherited it: a
	// leftover of a previous instance.
	BoundBy *Process `json:"bound_by,omitempty"`
	// Unowned says why no process was found with the socket (one with an
	// inode) open: UnownedHidden or UnownedNoFDTable. Processes may then
	// still list the process the kernel recorded taking the port.
	Unowned string `json:"unowned,omitempty"`
}

// Why a socket lists no process (Holder.Unowned).
const (
	// UnownedHidden: bindwatch is not root, and other users' processes
	// are invisible to it.
	UnownedHidden = "hidden"
	// UnownedNoFDTable: every process's fd table was searched and none
	// has the socket: it is in flight in a unix socket's queue (sent with
	// SCM_RIGHTS and not received yet), registered with io_uring, or the
	// kernel's own (an in-kernel server).
	UnownedNoFDTable = "no_fd_table"
)

// UnownedText says, for people, why h lists no process: "" when it does,
// or when it is a TIME_WAIT socket (which no process ever holds).
func UnownedText(h *Holder) string {
	if len(h.Processes) > 0 || h.State == "TIME_WAIT" {
		return ""
	}
	switch h.Unowned {
	case UnownedNoFDTable:
		return "held by no process's fd table: in flight in a unix socket's queue (sent with SCM_RIGHTS and not received yet), registered with io_uring, or the kernel's own"
	case UnownedHidden:
		return "no process of this user has it open; other users' processes are visible only to root (run with sudo)"
	}
	return "no process has it open"
}

// TimeWait summarizes TIME_WAIT sockets on the requested address.
type TimeWait struct {
	Count          int   `json:"count"`
	MaxRemainingMS int64 `json:"max_remaining_ms"`
}

// Start is written once, when tracing is live.
type Start struct {
	Header
	Kernel  string `json:"kernel"`
	Backend string `json:"backend"`
	// Skipped says why each better backend was not used.
	Skipped map[string]string `json:"skipped,omitempty"`
	// Limits says what this session cannot see or know, and why: "lineage"
	// (how listeners end, the evidence of a leftover), "netns_cookie"
	// (namespaces told apart by inode alone, before 5.12), "io_uring_addr"
	// (the address of an io_uring bind), "client_impact" (refused
	// connections and dropped datagrams, before 5.17). Absent when nothing
	// is missing.
	Limits map[string]string `json:"limits,omitempty"`
	PID    int               `json:"pid"`
	// Fold is the in-kernel folding window: repeats of one process's
	// failure on one port within it are counted, not each reported.
	FoldMS int64 `json:"fold_ms"`
	// IncidentQuietMS is the quiet gap after which an incident nobody
	// tries any more is abandoned (bindwatch report uses it too).
	IncidentQuietMS int64 `json:"incident_quiet_ms,omitempty"`
	// Filters are the filters in force: what a log with no failure in it
	// covers.
	Filters Filters `json:"filters"`
	// HoldersRecorded says the kernel records who takes each port, so a
	// holder that exits at once is still named (false with --no-holders:
	// holders are only looked up after the failure).
	HoldersRecorded bool `json:"holders_recorded"`
}

// Filters are a session's filters; each is absent when it does not
// narrow (every port, every process, …). All of them must pass for a
// failure to be traced.
type Filters struct {
	// Ports are the --port arguments: "8080", "9000-9100".
	Ports []string `json:"ports,omitempty"`
	// PIDs are the processes traced (--pid; bindwatch run: bindwatch
	// itself), with FollowChildren everything they fork from then on.
	PIDs           []uint32 `json:"pids,omitempty"`
	FollowChildren bool     `json:"follow_children,omitempty"`
	// Comm is --comm: only processes with this command name.
	Comm string `json:"comm,omitempty"`
	// Netns is --netns: only processes in the network namespace of this
	// inode.
	Netns uint32 `json:"netns,omitempty"`
	// Errnos are --errno: only these errors.
	Errnos []string `json:"errnos,omitempty"`
}

// FiltersText says the filters for people: "port 8080, 9000-9100; comm
// nginx", or "" when nothing is filtered.
func FiltersText(f Filters) string {
	var parts []string
	if len(f.Ports) > 0 {
		parts = append(parts, "port "+strings.Join(f.Ports, ", "))
	}
	if len(f.PIDs) > 0 {
		pids := make([]string, len(f.PIDs))
		for i, p := range f.PIDs {
			pids[i] = strconv.FormatUint(uint64(p), 10)
		}
		s := "pid " + strings.Join(pids, ", ")
		if f.FollowChildren {
			s += " and the processes they fork"
		}
		parts = append(parts, s)
	}
	if f.Comm != "" {
		parts = append(parts, "comm "+Escape(f.Comm))
	}
	if f.Netns != 0 {
		parts = append(parts, fmt.Sprintf("netns %d", f.Netns))
	}
	if len(f.Errnos) > 0 {
		parts = append(parts, strings.Join(f.Errnos, ", "))
	}
	return strings.Join(parts, "; ")
}

// Repeats reports failures folded in the kernel: the same process failed the
// same way on the same port Count more times, counted instead of reported
// one by one — within the fold window of a reported failure, or while the
// ring buffer was full.
type Repeats struct {
	Header
	Count   uint64 `json:"count"`
	PID     int    `json:"pid"`
	Comm    string `json:"comm"`
	Syscall string `json:"syscall"`
	Errno   string `json:"errno"`
	Proto   string `json:"proto"`
	Port    uint16 `json:"port"`
	// First and Last bound the span the folded failures happened in. The
	// kernel counts them without their times: the span is that of the
	// fold table generation they were counted in (a tick: the fold
	// window, at least 1 s), ending no later than a fold window after the
	// last failure of theirs that was reported. Absent in logs of
	// versions before them.
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
}

// Lost reports failures the kernel counted but could neither hand over nor
// fold: the ring buffer was full, and the fold table too (or folding is
// off). They are counted, never silently dropped. IncidentRecords counts,
// likewise, the incident records (signal, released, recovered,
// port_shared) lost since the last lost record: the kernel's incident ring
// was full, or the tracer had no room to queue them (a signal flood).
type Lost struct {
	Header
	Count           uint64 `json:"count"`
	IncidentRecords uint64 `json:"incident_records,omitempty"`
}

// Stop is written once, on a clean exit, with the session's counts.
type Stop struct {
	Header
	// Failures is every failure the kernel saw (after filters).
	Failures uint64 `json:"failures"`
	// Reported is how many bind_failure records were written.
	Reported uint64 `json:"reported"`
	// Folded is how many were counted into repeats records instead.
	Folded uint64 `json:"folded"`
	// Lost is how many found the ring buffer full (in lost records).
	Lost uint64 `json:"lost"`
	// Unread is how many were still queued in the ring buffer when
	// bindwatch stopped: a stop does not wait for a backlog to be
	// resolved. Failures = Reported + Folded + Lost + Unread (+ OtherUnits
	// under --unit).
	Unread uint64 `json:"unread"`
	// Unfolded is how many of the reported, lost or unread failures were
	// not folded because the fold table was full.
	Unfolded uint64 `json:"unfolded"`
	// Unresolved is how many of the reported failures could not be
	// resolved (their records say why, in resolve_error).
	Unresolved uint64 `json:"unresolved"`
	// SignalsFolded is how many signals to incidents' holders were counted
	// in signal_repeats records instead of recorded one by one;
	// IncidentRecordsLost how many kernel incident records (signal,
	// released, recovered, port_shared) were lost: the kernel's incident
	// ring buffer was full, or the tracer had no room to queue them.
	SignalsFolded       uint64 `json:"signals_folded"`
	IncidentRecordsLost uint64 `json:"incident_records_lost"`
	// IncidentsUntracked is how many incident_untracked records were
	// written: ports whose incident a full table or a user's quota refused.
	IncidentsUntracked uint64 `json:"incidents_untracked"`
	// Unfollowed is how many new processes of a followed tree (bindwatch
	// run, --follow-children) were not followed, so their failures were
	// not traced: more processes of the tree were alive at once than the
	// table of followed processes holds.
	Unfollowed uint64 `json:"unfollowed"`
	// OtherUnits is how many failures (reported in the kernel's count, or
	// folded there) were of processes outside the unit --unit names:
	// read, resolved and left out. Present only with --unit.
	OtherUnits uint64 `json:"other_units,omitempty"`
	// DurationMS is how long tracing was live.
	DurationMS int64 `json:"duration_ms"`
	// OutputLost is how many records this output (the file, standard
	// output or syslog the stop record is written to) could not write,
	// and OutputLostFailures how many failures they carried. Each output
	// fills in its own.
	OutputLost         uint64 `json:"output_lost"`
	OutputLostFailures uint64 `json:"output_lost_failures"`
}

// OutputLost says that an output could not write some records (a full
// disk, an I/O error, a reader gone, a syslog collector away): it is
// written into that output by the first write that gets through again,
// so what is missing is said where it is missing. Failures counts the
// failures those records carried (a bind_failure one, repeats and lost
// their count), so that failures still add up across an outage.
type OutputLost struct {
	Header
	// Output names the output: "file", "stdout", "stderr" or "syslog".
	Output   string `json:"output"`
	Records  uint64 `json:"records"`
	Failures uint64 `json:"failures"`
	// Error is the last error writing them, e.g. "no space left on device".
	Error string `json:"error"`
}
