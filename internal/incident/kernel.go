package incident

import (
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// Port is a port the kernel watches for an incident: its network
// namespace (inode), protocol and number.
type Port struct {
	Netns uint32
	Proto string
	Port  uint16
}

// Kernel is what Live asks of the tracer (watch adapts *tracer.Tracer to
// it): watch and unwatch a port, read the kernel's incident records, and
// count a port's client impact. This package loads no BPF: it never sees
// the tracer's types.
type Kernel interface {
	// MaxPorts is how many ports the kernel watches at once.
	MaxPorts() int
	// WatchPort has the kernel watch k (the namespace's cookie tells a
	// reused inode apart) and the holder pids given for signals, and
	// tells whether it had room for a new port.
	WatchPort(k Port, cookie uint64, pids []int) (bool, error)
	// UnwatchPort stops watching k and the pids given for it.
	UnwatchPort(k Port, pids []int) error
	// SeesUDPReleases tells whether the kernel reports a UDP socket's
	// release; NoHolders that it records no TCP listener (so a listener's
	// close is polled).
	SeesUDPReleases() bool
	NoHolders() bool
	// Impact is k's client impact since it was watched.
	Impact(k Port) (events.ImpactCount, error)
	// ReadIncident returns the kernel's next incident record, nil if
	// none is queued; WaitIncident waits for one until then (nil: none
	// came), and fails with os.ErrClosed once the tracer is closed.
	ReadIncident() (events.Record, error)
	WaitIncident(until time.Time) (events.Record, error)
}

// Resolver is what Live asks of user space's view of the host (watch
// adapts the session's *resolve.Resolver to it).
type Resolver interface {
	// OwnNetns is bindwatch's own network namespace.
	OwnNetns() host.Netns
	// Describe completes a process the kernel named (from /proc, redacted).
	Describe(p *events.Process)
	// SocketsOn lists the sockets on ports of one protocol in ns.
	SocketsOn(ns host.Netns, proto string, ports []uint16) (map[uint16]*host.PortSockets, error)
	// Holders are the sockets on a port in ns and their owners.
	Holders(ns host.Netns, proto string, port uint16) ([]events.Holder, error)
	// Running tells whether p is still the process it was (not exited,
	// its pid not reused); Owns whether it has one of inodes open.
	Running(p events.Process) bool
	Owns(p events.Process, inodes map[uint64]string) bool
}

// Sink receives the records Live writes (a watch.Sink).
type Sink interface {
	Write(rec events.Record) error
}
