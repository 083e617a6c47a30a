package resolve

import (
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Describe fills in a process from /proc and removes its secrets, as every
// process the resolver reports is (a signal's sender, a release's closer).
func (r *Resolver) Describe(p *events.Process) { r.describe(p) }

// PortSockets is what sock_diag shows on a port right now, without owners:
// the inodes of the sockets bound to it (with their state) and how many
// TIME_WAIT sockets it has. The incident poll asks it often, so it is
// never cached.
type PortSockets struct {
	Inodes   map[uint64]string
	TimeWait int
}

// Sockets lists the sockets on proto/port in the network namespace ns.
func (r *Resolver) Sockets(ns Netns, proto string, port uint16) (*PortSockets, error) {
	h, err := r.netns.acquire(ns.Path, 0, ns.Inode)
	if err != nil {
		return nil, err
	}
	defer r.netns.release(h)
	out := &PortSockets{Inodes: map[uint64]string{}}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		socks, err := dumpPort(h.diagFD, family, proto, port)
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			if proto == "tcp" && s.state == tcpTimeWait {
				out.TimeWait++
			} else if s.inode != 0 {
				out.Inodes[uint64(s.inode)] = stateName(proto, s.state)
			}
		}
	}
	return out, nil
}

// Running tells whether p (pid and, where known, start time) is still
// alive.
func Running(p events.Process) bool { return running(p) }
