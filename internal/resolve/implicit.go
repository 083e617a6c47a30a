package resolve

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
)

// Implicit binds: a connect() or sendto() whose local port the kernel
// could not pick (ephemeral exhaustion). What holds the ports is read
// from one sock_diag dump of the namespace's ip_local_port_range, filtered
// in the kernel by local port, then in Go by destination.

// maxImplicitOwnerLookups bounds the sockets whose owners are looked up
// (the iterator's wanted_inodes map holds 4,096); the rest are counted
// under an owner with no pids.
const maxImplicitOwnerLookups = 4096

// resolveImplicit fills f.LocalPorts and f.Holders for an implicit bind
// that found no local port, and facts.Ephemeral.
func (r *Resolver) resolveImplicit(f *events.Failure, h *netnsHandle, facts *diagnose.Facts) error {
	eph, err := r.ephemeralPorts(h)
	if err != nil {
		return err
	}
	facts.Ephemeral = eph
	if !eph.Known() {
		return fmt.Errorf("resolve %s %s failure of pid %d: net.ipv4.ip_local_port_range unknown in network namespace %d", f.Syscall, f.Errno, f.Process.PID, h.Inode)
	}
	dst, err := netip.ParseAddr(f.Destination.IP)
	if err != nil {
		return fmt.Errorf("destination %q: %w", f.Destination.IP, err)
	}
	dst = dst.Unmap()
	space := f.Proto
	if space == "mptcp" {
		space = "tcp"
	}
	if space != "tcp" && space != "udp" {
		return nil
	}
	src, srcErr := netip.ParseAddr(f.Addr)
	specificSrc := srcErr == nil && !src.Unmap().IsUnspecified()
	if specificSrc {
		src = src.Unmap()
	}

	h.mu.Lock()
	diag, err := dumpBothFamilies(h.diagFD, space, rangeFilter(uint16(eph.Lo), uint16(eph.Hi)),
		fmt.Sprintf("local ports %s", eph.RangeText()))
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("list %s sockets on the ephemeral range %s in network namespace %d: %w", space, eph.RangeText(), h.Inode, err)
	}

	reserved := map[int]bool{}
	usable := 0
	for p := eph.Lo; p <= eph.Hi; p++ {
		if eph.IsReserved(p) {
			reserved[p] = true
		} else {
			usable++
		}
	}
	// The sockets that keep a connect() toward dst off a port: a
	// connection to dst (its 4-tuple taken, from the same source when the
	// failing socket named one), or a socket listening or bound there by
	// bind(), which connect() never shares. For UDP every socket: its
	// autobind needs a port no socket has.
	var held []diagSocket
	ports := map[uint16]bool{}
	for _, s := range diag {
		if reserved[int(s.sport)] || int(s.sport) < eph.Lo || int(s.sport) > eph.Hi {
			continue
		}
		if space == "tcp" {
			toward := s.dport == f.Destination.Port && s.dst.Unmap() == dst && (!specificSrc || s.src.Unmap() == src)
			if !toward && s.state != tcpListen && s.state != tcpClose && s.state != tcpBoundInactive {
				continue
			}
		}
		held = append(held, s)
		ports[s.sport] = true
	}

	var inodes []uint32
	for _, s := range held {
		if s.inode != 0 && len(inodes) < maxImplicitOwnerLookups {
			inodes = append(inodes, s.inode)
		}
	}
	owners := map[uint32]*socketOwners{}
	if len(inodes) > 0 {
		if it := r.ownerIterators(); it != nil {
			if owners, _, err = it.socketOwners(inodes, nil); err != nil {
				return fmt.Errorf("find owners of the sockets on the ephemeral range: %w", err)
			}
		} else {
			owners, _ = scanProcForSockets(inodes)
		}
	}

	procs := map[int]events.Process{}
	proc := func(pid int) events.Process {
		p, ok := procs[pid]
		if !ok {
			p = events.Process{PID: pid}
			r.describe(&p)
			procs[pid] = p
		}
		return p
	}
	type group struct {
		owner events.PortOwner
		ports map[uint16]bool
	}
	groups := map[string]*group{}
	var all []events.Holder
	for _, s := range held {
		var pids []int
		if o := owners[s.inode]; o != nil && s.inode != 0 {
			pids = o.pids
		}
		key := fmt.Sprint(pids)
		g := groups[key]
		if g == nil {
			g = &group{owner: events.PortOwner{PIDs: append([]int{}, pids...), States: map[string]int{}}, ports: map[uint16]bool{}}
			if len(pids) > 0 {
				p := proc(pids[0])
				g.owner.Comm, g.owner.Unit = p.Comm, p.Unit
			}
			groups[key] = g
		}
		g.owner.States[stateName(space, s.state)]++
		g.ports[s.sport] = true
		hd := events.Holder{Source: events.SeenLive, Proto: space, State: stateName(space, s.state),
			Addr: s.src.String(), Port: s.sport, PeerPort: s.dport, Inode: uint64(s.inode), UID: s.uid,
			Netns: h.Inode, V6Only: s.v6only, Processes: []events.Process{}}
		if s.dport != 0 {
			hd.PeerAddr = s.dst.String()
		}
		if s.state == tcpTimeWait && space == "tcp" {
			hd.RemainingMS = int64(s.expiresMS)
		}
		for _, pid := range pids {
			hd.Processes = append(hd.Processes, events.Process{PID: pid})
		}
		if len(pids) == 0 && s.inode != 0 {
			hd.Unowned = events.UnownedHidden
		}
		all = append(all, hd)
	}
	lp := &events.LocalPorts{Range: eph.RangeText(), Reserved: eph.Reserved, Usable: usable, InUse: len(ports), Owners: []events.PortOwner{}}
	var list []*group
	for _, g := range groups {
		g.owner.Ports = len(g.ports)
		list = append(list, g)
	}
	slices.SortFunc(list, func(a, b *group) int {
		if c := cmp.Compare(b.owner.Ports, a.owner.Ports); c != 0 {
			return c
		}
		return slices.Compare(a.owner.PIDs, b.owner.PIDs)
	})
	for i, g := range list {
		if i >= events.LocalPortOwnersMax {
			lp.MoreOwners = len(list) - i
			break
		}
		lp.Owners = append(lp.Owners, g.owner)
	}
	f.LocalPorts = lp
	// The holders listed (a few of each kind, listHolders) get their
	// processes described.
	f.Holders, f.TimeWait = listHolders(all)
	for i := range f.Holders {
		for j := range f.Holders[i].Processes {
			f.Holders[i].Processes[j] = proc(f.Holders[i].Processes[j].PID)
		}
	}
	return nil
}
