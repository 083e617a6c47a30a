// Package resolve names the other side of a failed bind(): the sockets that
// hold the address in the failing socket's network namespace (sock_diag
// netlink, filtered by port in the kernel), the processes that own them (a
// BPF task iterator walking every fd table, or a /proc scan when BPF is
// unavailable), the details of any process from /proc, and the facts about
// the failing socket's network namespace that internal/diagnose judges
// from. It also answers `bindwatch who`: who holds a port right now.
package resolve

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/iterload"
	"github.com/bindwatch/bindwatch/internal/redact"
)

// DefaultCacheTTL is how long a port's holders are reused: a storm of
// failures on one port costs one resolution per window, yet a holder that
// has just exited is not reported as live for long.
const DefaultCacheTTL = 150 * time.Millisecond

// Caps on the sockets listed per port. Listening and bound sockets are
// always all listed; connections and TIME_WAIT sockets can number in the
// thousands on a busy port, so only the first few are (TIME_WAIT ones with
// the most time left first) and TimeWait / PortReport.Sockets count them all.
const (
	maxListedConnected = 8
	maxListedTimeWait  = 8
)

// Options configure a Resolver.
type Options struct {
	// CacheTTL: see DefaultCacheTTL. 0 means the default; negative
	// disables caching.
	CacheTTL time.Duration
	// NoBPF skips the BPF iterators and scans /proc for socket owners.
	NoBPF bool
	// OneShot is for a command that makes one lookup and exits (who):
	// the BPF iterators load only when a lookup needs them, and a host
	// with few open fds is scanned through /proc instead (smallHostFDs),
	// which then costs less than loading them; the answer is the same.
	OneShot bool
	// SharedIterators: use the iterators a running tracer shares
	// (iterload.OpenShared) when there are, instead of loading a copy,
	// which costs a one-shot command most of its time on a host with
	// many open fds. For the commands (who, free, wait-free), not for a
	// tracer's own resolver.
	SharedIterators bool
	// ScanMaxFDs, with OneShot, is the most open fds on the host for
	// which the /proc scan is chosen; 0 means smallHostFDs.
	ScanMaxFDs int
	// Redact removes secrets from every process the resolver describes;
	// nil is the default rules (redact.Off() turns it off).
	Redact *redact.Rules
	// Names, if set, adds container and pod names to every process after
	// its details are read from /proc (enrich.Namer.Process), so that
	// holders carry them and the diagnosis can use them.
	Names func(*events.Process)
	// SocketUnit, if set, is asked about every process of a live holder
	// of a failure before the diagnosis (enrich.SocketUnits.Holder): it
	// fills p.SocketUnit when p is the service manager holding h for a
	// socket unit, and returns why it could not ("" when it could, or
	// when p is no manager it asks).
	SocketUnit func(h *events.Holder, p *events.Process) (note string)
}

// Resolver finds the holders of ports and diagnoses failures. It is safe for
// concurrent use. Close it to release the BPF iterators and namespaces.
type Resolver struct {
	netns    *netnsCache
	cacheTTL time.Duration
	redact   *redact.Rules
	names    func(*events.Process)
	sockUnit func(*events.Holder, *events.Process) string
	// ownPidNS: /proc shows a pid namespace of bindwatch's own (a
	// container's), not the host's whose pids the kernel reports. Owners
	// of sockets are then the processes this /proc shows holding them,
	// under their pids here (see snapshot).
	ownPidNS bool

	// The BPF iterators load in the background from New on (decoding the
	// kernel's BTF for them takes ~10 ms of CPU), while the first lookup
	// asks sock_diag; a lookup that finds no socket to own never waits.
	itersLoaded chan struct{}
	itersMu     sync.Mutex // guards iters and closed across load and Close
	iters       *iterators // nil: owners come from a /proc scan
	iterErr     error      // why iters is nil
	closed      bool
	loadIters   sync.Once // starts the load (at once, or with OneShot on demand)

	oneShot    bool
	scanMaxFDs int
	// scanned says the last lookup's owners came from a /proc scan that
	// OneShot chose (guarded by itersMu).
	scanned bool

	mu    sync.Mutex
	cache map[portKey]*portEntry

	job *diagnose.Job // see SetJob
}

type portKey struct {
	netns uint32
	proto string
	port  uint16
}

// portEntry is one resolution of a port, shared by every caller that asks
// while it runs or within the cache window.
type portEntry struct {
	done chan struct{}
	at   time.Time
	snap *portSnapshot
	err  error
}

// portSnapshot is every socket on one port in one network namespace, with
// owners and process details, at one moment.
type portSnapshot struct {
	netns   host.Netns
	sockets []heldSocket
}

// heldSocket is one socket of a snapshot: the Holder as reported, plus what
// the conflict check needs.
type heldSocket struct {
	holder events.Holder
	addr   boundAddr
}

// New returns a Resolver. It starts loading the BPF iterators, and when
// that fails (no BTF, no CAP_BPF, lockdown) falls back to scanning /proc;
// OwnerLookup says which and why. It fails only when /proc is unusable.
func New(opts Options) (*Resolver, error) {
	nc, err := newNetnsCache()
	if err != nil {
		return nil, err
	}
	r := &Resolver{netns: nc, cacheTTL: opts.CacheTTL, cache: make(map[portKey]*portEntry),
		itersLoaded: make(chan struct{}), redact: opts.Redact, names: opts.Names, sockUnit: opts.SocketUnit,
		ownPidNS: host.ProcPidNamespace() != nil,
		oneShot:  opts.OneShot, scanMaxFDs: cmp.Or(opts.ScanMaxFDs, smallHostFDs)}
	if r.cacheTTL == 0 {
		r.cacheTTL = DefaultCacheTTL
	}
	switch {
	case opts.NoBPF:
		r.loadIters.Do(func() {
			r.iterErr = errors.New("disabled by option")
			close(r.itersLoaded)
		})
	case opts.SharedIterators && r.openShared():
		// Opened at once (~1 ms): cheaper than a /proc scan of even a
		// small host, which a one-shot lookup then does not start.
	case !opts.OneShot:
		r.startIterators()
	}
	return r, nil
}

// openShared opens the BPF iterators a running tracer shares
// (iterload.OpenShared) as the resolver's, and reports whether it could.
func (r *Resolver) openShared() bool {
	shared, err := iterload.OpenShared()
	if err != nil {
		return false
	}
	r.loadIters.Do(func() {
		r.iters = &iterators{Iterators: shared}
		close(r.itersLoaded)
	})
	return true
}

// startIterators starts loading the BPF iterators in the background, once.
func (r *Resolver) startIterators() {
	r.loadIters.Do(func() {
		go func() {
			it, err := loadIterators(ownerVariants)
			r.itersMu.Lock()
			if r.closed && it != nil { // closed while loading: nobody will use them
				it.close()
				it, err = nil, errors.New("resolver closed")
			}
			r.iters, r.iterErr = it, err
			r.itersMu.Unlock()
			close(r.itersLoaded)
		}()
	})
}

// ownerIterators waits for the BPF iterators to load and returns them, or
// nil when they could not be (the /proc scan is used then).
func (r *Resolver) ownerIterators() *iterators {
	r.startIterators()
	<-r.itersLoaded
	r.itersMu.Lock()
	defer r.itersMu.Unlock()
	return r.iters
}

// Close releases the BPF iterators and the cached namespaces. It does not
// wait for iterators still loading: they are released once loaded.
func (r *Resolver) Close() error {
	r.itersMu.Lock()
	r.closed = true
	if r.iters != nil {
		r.iters.close()
		r.iters = nil
	}
	r.itersMu.Unlock()
	r.netns.closeAll()
	return nil
}

// SharedIteratorsFrom is where the BPF iterators in use were opened from
// when they are a running tracer's (Options.SharedIterators), or "".
func (r *Resolver) SharedIteratorsFrom() string {
	if it := r.ownerIterators(); it != nil {
		return it.SharedFrom()
	}
	return ""
}

// OwnerLookup returns how socket owners are found (OwnersBPFIter or
// OwnersProcScan) and, for the /proc scan, why the iterator is not used.
func (r *Resolver) OwnerLookup() (method string, fallbackReason error) {
	r.itersMu.Lock()
	scanned := r.scanned
	r.itersMu.Unlock()
	if scanned {
		return OwnersProcScan, nil
	}
	if r.ownerIterators() != nil {
		return OwnersBPFIter, nil
	}
	r.itersMu.Lock()
	defer r.itersMu.Unlock()
	return OwnersProcScan, r.iterErr
}

// OwnNetns is bindwatch's own network namespace.
func (r *Resolver) OwnNetns() host.Netns {
	return host.Netns{Inode: r.netns.own, Path: "/proc/self/ns/net"}
}

// PortReport is who holds one port in one network namespace.
type PortReport struct {
	Netns host.Netns
	Proto string
	Port  uint16
	// Holders: every socket bound to the port (listeners and bound
	// sockets all; connections and TIME_WAIT up to a few each).
	Holders  []events.Holder
	TimeWait *events.TimeWait
	// Sockets counts every socket on the port, listed or not.
	Sockets int
}

// Held reports whether any socket, TIME_WAIT included, is on the port.
func (p *PortReport) Held() bool { return p.Sockets > 0 }

// Who reports every socket bound to proto/port in the network namespace ns.
func (r *Resolver) Who(ns host.Netns, proto string, port uint16) (*PortReport, error) {
	if proto != "tcp" && proto != "udp" {
		return nil, fmt.Errorf("protocol %q: bindwatch resolves tcp and udp ports", proto)
	}
	h, err := r.netns.acquire(ns.Path, 0, ns.Inode)
	if err != nil {
		return nil, err
	}
	defer r.netns.release(h)
	snap, err := r.portSnapshot(h, proto, port)
	if err != nil {
		return nil, err
	}
	rep := &PortReport{Netns: h.Netns, Proto: proto, Port: port, Sockets: len(snap.sockets)}
	all := make([]events.Holder, 0, len(snap.sockets))
	for _, s := range snap.sockets {
		all = append(all, copyHolder(s.holder))
	}
	rep.Holders, rep.TimeWait = listHolders(all)
	return rep, nil
}

// Resolve adds to a failure what user space can find: the failing process's
// details, the holders of the address merged with those the kernel
// recorded, the TIME_WAIT summary, and the diagnosis and hint. The
// diagnosis is filled even when the lookup fails; the error says what could
// not be looked up.
func (r *Resolver) Resolve(f *events.Failure) error {
	r.describe(&f.Process)
	for i := range f.Holders {
		for j := range f.Holders[i].Processes {
			r.describe(&f.Holders[i].Processes[j])
		}
	}
	facts := diagnose.Facts{Job: r.job}
	err := r.resolve(f, &facts)
	v := diagnose.Diagnose(f, facts, time.Now())
	f.Cause, f.Confidence, f.Diagnosis, f.Hint = v.Cause, v.Confidence, v.Diagnosis, v.Hint
	return err
}

// SetJob tells the resolver that the failures it resolves come from job's
// process tree (bindwatch run), so that a holder in the same tree is named
// as a sibling. Call it before the first Resolve.
func (r *Resolver) SetJob(job *diagnose.Job) { r.job = job }

func (r *Resolver) resolve(f *events.Failure, facts *diagnose.Facts) error {
	h, err := r.netns.acquire("", f.Process.PID, f.Process.Netns)
	if err != nil {
		return fmt.Errorf("resolve %s failure of pid %d: %w", f.Errno, f.Process.PID, err)
	}
	defer r.netns.release(h)
	facts.OwnNetns = h.Inode == r.netns.own
	if f.Destination != nil {
		return r.resolveImplicit(f, h, facts)
	}
	switch f.Errno {
	case "EADDRNOTAVAIL":
		facts.Addrs, err = r.netnsAddrs(h)
		return err
	case "EINVAL":
		return nil // the failing socket itself is bound: no other holder
	case "EACCES":
		facts.UnprivilegedPortStart, err = r.unprivilegedPortStart(h)
		if err != nil {
			return err
		}
	case "EADDRINUSE":
		if f.Port != 0 {
			// Without it, an outgoing connection on the port is
			// diagnosed as a plain holder: still named, not explained.
			facts.Ephemeral, _ = r.ephemeralPorts(h)
		}
	}
	// MPTCP takes its ports from TCP's table (Go's net listens with
	// MPTCP by default where net.mptcp.enabled is on): its holders are
	// TCP sockets, MPTCP or not.
	space := f.Proto
	if space == "mptcp" {
		space = "tcp"
	}
	if space != "tcp" && space != "udp" {
		return nil
	}
	snap, err := r.portSnapshot(h, space, f.Port)
	if err != nil {
		return err
	}
	want, ok := failingAddr(f)
	quirks := bindQuirksFor(space)
	var live []events.Holder
	for _, s := range snap.sockets {
		if ok && !addrsOverlap(want, s.addr, quirks) {
			continue
		}
		// listen() fails only against a listener: a socket merely bound
		// beside it (both with SO_REUSEADDR) does not stop it.
		if f.Syscall == "listen" && s.holder.State != "LISTEN" {
			continue
		}
		live = append(live, copyHolder(s.holder))
	}
	merged := mergeRecorded(live, f.Holders, !r.ownPidNS)
	f.Holders, f.TimeWait = listHolders(merged)
	noteOwnFD(f)
	if r.sockUnit != nil {
		for i := range f.Holders {
			h := &f.Holders[i]
			if h.Source != events.SeenLive {
				continue
			}
			for j := range h.Processes {
				if note := r.sockUnit(h, &h.Processes[j]); note != "" {
					facts.SocketUnitNote = note
				}
			}
		}
	}
	return nil
}

// noteOwnFD finds, for a holder the failing process owns itself, the
// socket's file descriptor in it (a self-conflict: which of its sockets
// is in the way).
func noteOwnFD(f *events.Failure) {
	for i := range f.Holders {
		h := &f.Holders[i]
		if h.Inode == 0 || !slices.ContainsFunc(h.Processes, func(p events.Process) bool { return p.PID == f.Process.PID }) {
			continue
		}
		if fd, ok := socketFD(f.Process.PID, h.Inode); ok {
			h.FD = &fd
		}
	}
}

// failingAddr is the failing socket's address for the conflict check.
func failingAddr(f *events.Failure) (boundAddr, bool) {
	a, err := netip.ParseAddr(f.Addr)
	if err != nil {
		return boundAddr{}, false
	}
	b := boundAddr{v6: f.Family == "ipv6", addr: a, dev: uint32(f.Socket.BoundDevIndex)}
	if b.v6 {
		b.addr = netip.AddrFrom16(a.As16())
		b.v6only = f.Socket.V6Only != nil && *f.Socket.V6Only
	} else {
		b.addr = a.Unmap()
	}
	return b, true
}

// mergeRecorded folds the holders the kernel recorded at the moment of
// failure into the live ones: one live with the same inode becomes one
// SeenLive holder (keeping the recorded process when the live scan found no
// owner, and when it was bound); one not found live stays Recorded — it
// exited since, the restart race.
//
// lineage is false when bindwatch's /proc is of a pid namespace of its
// own: the kernel's record names host pids, the live holders this /proc's,
// and comparing them would call every holder a leftover.
func mergeRecorded(live []events.Holder, given []events.Holder, lineage bool) []events.Holder {
	out := live
	for _, rec := range given {
		if rec.Source != events.Recorded {
			continue
		}
		i := slices.IndexFunc(out, func(h events.Holder) bool {
			return rec.Inode != 0 && h.Inode == rec.Inode && h.Source == events.SeenLive
		})
		if i < 0 {
			out = append(out, rec)
			continue
		}
		if len(out[i].Processes) == 0 {
			out[i].Processes = rec.Processes
		} else if lineage {
			noteLineage(&out[i], rec)
		}
		if out[i].Since.IsZero() {
			out[i].Since = rec.Since
		}
	}
	return out
}

// noteLineage compares the process the kernel recorded taking the port
// with a socket (listen() for TCP, bind() for UDP) with the processes
// holding it now. Two marks of a leftover follow
// from it, whatever reaped the orphans (init or a child subreaper such as
// systemd --user, containerd-shim or tini): the listener is still a holder
// but its parent changed (the parent exited: OrigPPID), or the listener
// exited and the socket lives on in processes that inherited it (BoundBy).
func noteLineage(live *events.Holder, rec events.Holder) {
	if len(rec.Processes) == 0 {
		return
	}
	listener := rec.Processes[0]
	for i := range live.Processes {
		p := &live.Processes[i]
		if p.PID != listener.PID || !sameStart(p.StartTime, listener.StartTime) {
			continue
		}
		if listener.PPID > 0 && p.PPID > 0 && p.PPID != listener.PPID {
			p.OrigPPID = listener.PPID
			p.OrigParentExit = listener.OrigParentExit
		}
		return
	}
	// Not among the holders: it exited, or it closed its fd after handing
	// the socket over (socket activation, a graceful-restart handoff) —
	// only the former makes the holders leftovers.
	if !running(listener) {
		live.BoundBy = &listener
	}
}

// listHolders orders holders by how much they matter — listening, then
// bound, then recorded, then connected, then TIME_WAIT by time left — caps
// connections and TIME_WAIT, and summarizes TIME_WAIT.
func listHolders(all []events.Holder) ([]events.Holder, *events.TimeWait) {
	rank := func(h events.Holder) int {
		switch {
		case h.State == "LISTEN":
			return 0
		case h.State == "BOUND" || h.State == "UNCONN":
			return 1
		case h.Source == events.Recorded:
			return 2
		case h.State == "TIME_WAIT":
			return 4
		default:
			return 3
		}
	}
	slices.SortStableFunc(all, func(a, b events.Holder) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return cmp.Compare(b.RemainingMS, a.RemainingMS)
	})
	var tw *events.TimeWait
	// Never nil: a failure's holders are a list, empty when none was
	// found (the schema requires it).
	out := all[:0]
	if out == nil {
		out = []events.Holder{}
	}
	connected := 0
	for _, h := range all {
		switch rank(h) {
		case 3:
			connected++
			if connected > maxListedConnected {
				continue
			}
		case 4:
			if tw == nil {
				tw = &events.TimeWait{}
			}
			tw.Count++
			tw.MaxRemainingMS = max(tw.MaxRemainingMS, h.RemainingMS)
			if tw.Count > maxListedTimeWait {
				continue
			}
		}
		out = append(out, h)
	}
	return out, tw
}

// portSnapshot returns the sockets on proto/port in h's namespace, from the
// cache when a resolution of the same port is under way or recent.
func (r *Resolver) portSnapshot(h *netnsHandle, proto string, port uint16) (*portSnapshot, error) {
	key := portKey{h.Inode, proto, port}
	r.mu.Lock()
	if e := r.cache[key]; e != nil {
		select {
		case <-e.done:
			if time.Since(e.at) <= r.cacheTTL {
				r.mu.Unlock()
				return e.snap, e.err
			}
		default: // under way: wait for it
			r.mu.Unlock()
			<-e.done
			return e.snap, e.err
		}
	}
	e := &portEntry{done: make(chan struct{})}
	r.cache[key] = e
	for k, old := range r.cache { // drop expired entries
		select {
		case <-old.done:
			if time.Since(old.at) > r.cacheTTL {
				delete(r.cache, k)
			}
		default:
		}
	}
	r.mu.Unlock()

	e.snap, e.err = r.snapshot(h, proto, port)
	e.at = time.Now()
	close(e.done)
	return e.snap, e.err
}

// snapshot does one resolution: sock_diag for both families, owners of the
// sockets, TIME_WAIT flags, process details.
func (r *Resolver) snapshot(h *netnsHandle, proto string, port uint16) (*portSnapshot, error) {
	// A one-shot lookup that may scan /proc starts the scan now, beside
	// the dump (~2 ms each on a small host); on a host with too many fds
	// for it, the iterators start loading instead (~8 ms), beside the
	// dump too. (Should the port be free, they are not waited for.)
	var ps *procScan
	if r.mayScan(proto) {
		ps = startProcScan(r.scanMaxFDs, r.startIterators)
	}
	h.mu.Lock()
	diag, err := dumpPortBothFamilies(h.diagFD, proto, port)
	h.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("list %s sockets on port %d in network namespace %d: %w", proto, port, h.Inode, err)
	}

	var inodes []uint32
	hasTimeWait := false
	for _, s := range diag {
		if s.inode != 0 {
			inodes = append(inodes, s.inode)
		}
		hasTimeWait = hasTimeWait || (proto == "tcp" && s.state == tcpTimeWait)
	}
	owners := map[uint32]*socketOwners{}
	// complete: every process's fd table was searched (the task iterator
	// sees them all; a /proc scan, those it may read), so a socket none
	// has is held by no fd table.
	complete := false
	// A one-shot lookup on a small host scans /proc: loading the
	// iterators would cost more. It gives up (and the iterators answer)
	// when it cannot give the same answer.
	scanned := len(inodes) > 0 && r.scanIsCheaper(proto, hasTimeWait, ps)
	if scanned {
		owners, complete = ps.owners(inodes)
		scanned = complete && readReuseFlags(owners) == nil
	}
	r.itersMu.Lock()
	r.scanned = scanned
	r.itersMu.Unlock()
	if !scanned {
		if r.oneShot && len(inodes) > 0 {
			r.startIterators() // before the probe, which it overlaps
		}
		// A TCP socket bound but neither listening nor connected is in
		// no table sock_diag walks before 6.8 (which added its
		// bound-inactive pseudo-state): the task iterator finds it among
		// the open files. Probed (once, ~1.4 ms: a sock_diag walk)
		// before waiting for the iterators, while a one-shot lookup
		// still loads them.
		diagMissesBound := proto == "tcp" && !probedDiagListsBoundOnly()
		var it *iterators
		if len(inodes) > 0 || diagMissesBound {
			it = r.ownerIterators()
		}
		findBound := it != nil && diagMissesBound
		if len(inodes) > 0 || findBound {
			var err error
			if it != nil {
				var bound *boundQuery
				if findBound {
					bound = &boundQuery{netns: h.Inode, port: port}
				}
				var boundOnly []diagSocket
				owners, boundOnly, err = it.socketOwners(inodes, bound)
				complete = true
				for _, s := range boundOnly {
					if !slices.Contains(inodes, s.inode) { // listed by sock_diag from 6.8
						diag = append(diag, s)
					}
				}
			} else {
				owners, complete = scanProcForSockets(inodes)
			}
			if err != nil {
				return nil, fmt.Errorf("find owners of sockets on port %d: %w", port, err)
			}
		}
		if r.ownPidNS && it != nil {
			// The iterator names owners by their host pids, which this
			// /proc shows as other processes or none: take the owners
			// this /proc shows instead (its pids, the ones kill and
			// systemctl take here), with the flags the iterator read.
			// A socket held only outside this pid namespace goes
			// unnamed (hidden).
			here, _ := scanProcForSockets(inodes)
			for ino, o := range owners {
				if h := here[ino]; h != nil {
					h.reuseAddr, h.reusePort, h.v6only = o.reuseAddr, o.reusePort, o.v6only
				}
			}
			owners = here
		}
		complete = complete && !r.ownPidNS
	}
	var twFlags map[timewaitKey]timewaitReuse
	if hasTimeWait {
		if it := r.ownerIterators(); it != nil {
			// Without them the TIME_WAIT holders' flags stay unknown;
			// the holders themselves are still reported.
			twFlags, _ = it.timewaitFlags(h, r.netns.own, port)
		}
	}

	procs := make(map[int]events.Process)
	snap := &portSnapshot{netns: h.Netns}
	for _, s := range diag {
		hs := heldSocket{
			holder: events.Holder{
				Source:    events.SeenLive,
				Proto:     proto,
				State:     stateName(proto, s.state),
				Addr:      s.src.String(),
				Port:      s.sport,
				PeerPort:  s.dport,
				Inode:     uint64(s.inode),
				UID:       s.uid,
				Netns:     h.Inode,
				V6Only:    s.v6only,
				Processes: []events.Process{},
			},
			addr: boundAddr{v6: s.family == unix.AF_INET6, addr: s.src, dev: s.ifindex},
		}
		if s.v6only != nil {
			hs.addr.v6only = *s.v6only
		}
		if s.dport != 0 {
			hs.holder.PeerAddr = s.dst.String()
		}
		if s.state == tcpTimeWait && proto == "tcp" {
			hs.holder.RemainingMS = int64(s.expiresMS)
			if f, ok := twFlags[timewaitKey{s.src, s.dst, s.sport, s.dport}]; ok {
				hs.holder.ReuseAddr = boolPtr(f.reuseAddr)
				hs.holder.ReusePort = boolPtr(f.reusePort)
			}
		}
		if o := owners[s.inode]; o != nil && s.inode != 0 {
			hs.holder.ReuseAddr, hs.holder.ReusePort = o.reuseAddr, o.reusePort
			for _, pid := range o.pids {
				p, ok := procs[pid]
				if !ok {
					p = events.Process{PID: pid}
					r.describe(&p)
					procs[pid] = p
				}
				hs.holder.Processes = append(hs.holder.Processes, p)
			}
		}
		if len(hs.holder.Processes) == 0 && s.inode != 0 {
			hs.holder.Unowned = events.UnownedHidden
			if complete {
				hs.holder.Unowned = events.UnownedNoFDTable
			}
		}
		snap.sockets = append(snap.sockets, hs)
	}
	return snap, nil
}

// copyHolder copies a cached holder so that callers may change it.
func copyHolder(h events.Holder) events.Holder {
	h.Processes = slices.Clone(h.Processes)
	return h
}
