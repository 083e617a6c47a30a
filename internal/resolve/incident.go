package resolve

import (
	"fmt"
	"os"
	"strconv"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// Describe fills in a process from /proc and removes its secrets, as every
// process the resolver reports is (a signal's sender, a release's closer).
func (r *Resolver) Describe(p *events.Process) { r.describe(p) }

// Sockets lists the sockets on proto/port in the network namespace ns.
func (r *Resolver) Sockets(ns host.Netns, proto string, port uint16) (*host.PortSockets, error) {
	all, err := r.SocketsOn(ns, proto, []uint16{port})
	if err != nil {
		return nil, err
	}
	return all[port], nil
}

// SocketsOn lists the sockets on each of the ports (proto) in the network
// namespace ns: one sock_diag dump (TCP) or one per address family (UDP),
// however many ports — what the incident poll asks every 100 ms for all
// the ports it watches there, so that its cost does not grow with them.
func (r *Resolver) SocketsOn(ns host.Netns, proto string, ports []uint16) (map[uint16]*host.PortSockets, error) {
	h, err := r.netns.acquire(ns.Path, 0, ns.Inode)
	if err != nil {
		return nil, err
	}
	defer r.netns.release(h)
	out := make(map[uint16]*host.PortSockets, len(ports))
	for _, p := range ports {
		out[p] = &host.PortSockets{Inodes: map[uint64]string{}}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("sock_diag: no port to filter on")
	}
	h.mu.Lock()
	socks, err := dumpBothFamilies(h.diagFD, proto, portsOrRange(ports), fmt.Sprintf("port %d", ports[0]))
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, s := range socks {
		ps := out[s.sport]
		switch {
		case ps == nil: // not asked: in the range the filter kept
		case proto == "tcp" && s.state == tcpTimeWait:
			ps.TimeWait++
		case s.inode != 0:
			ps.Inodes[uint64(s.inode)] = stateName(proto, s.state)
		}
	}
	return out, nil
}

// Running tells whether p (pid and, where known, start time) is still
// alive.
func Running(p events.Process) bool { return running(p) }

// maxOwnerFDs bounds how many fds Owns reads of one process: a process
// anyone runs may open a million.
const maxOwnerFDs = 1 << 16

// Owns tells whether p (still running) has one of the socket inodes open
// among its first maxOwnerFDs fds.
func Owns(p events.Process, inodes map[uint64]string) bool {
	if len(inodes) == 0 || !running(p) {
		return false
	}
	dir := procRoot + "/" + strconv.Itoa(p.PID) + "/fd/"
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer d.Close()
	for seen := 0; seen < maxOwnerFDs; {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			if ino, ok := fdSocketInode(dir + name); ok {
				if _, held := inodes[uint64(ino)]; held {
					return true
				}
			}
		}
		seen += len(names)
		if err != nil {
			return false
		}
	}
	return false
}
