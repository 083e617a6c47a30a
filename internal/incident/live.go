package incident

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// pollInterval is how often the sockets the kernel cannot report on (UDP
// holders, TIME_WAIT) are looked at while their port has an open
// incident: the precision of a poll's released record.
const pollInterval = 100 * time.Millisecond

// maxWatchedPIDs caps the holders of one port watched for signals: a
// port shared by a forking server's workers has many.
const maxWatchedPIDs = 64

// incidentStep is how often a session hands over the kernel's incident
// records and polls.
const incidentStep = pollInterval

// The kernel watches at most Kernel.MaxPorts ports. As in the
// builder's table, no user but root may have more than maxWatchedPerUser
// of them watched, nor their holders give the kernel more than
// maxHolderPIDsPerUser pids (of its incident_holders' 4096), and
// reservedWatched of the ports are kept for root's incidents and those
// of the --port ports. A port refused is said in an incident_untracked
// record (table kernel).
const (
	maxWatchedPerUser    = 64
	reservedWatched      = 256
	maxHolderPIDsPerUser = 512
)

// Live follows a trace's incidents as they happen. The session shows it
// every record it writes (Failed before a failure, Saw after the others);
// Live opens and closes the incidents in the kernel's maps — so the kernel
// reports released, signal and recovered for those ports only — completes
// the kernel's records with what user space knows (attempts, outage,
// process details) and writes them, and polls, for ports with an open
// incident only, what no kernel hook here reports: a UDP holder or
// TIME_WAIT socket going away.
type Live struct {
	out     Sink
	kernel  Kernel
	res     Resolver
	host    string
	builder *Builder
	ports   map[Key]*watchedPort
	// protected tells whether a port is one of --port's.
	protected func(port uint16) bool
	// watched counts the ports the kernel watches, in all and per user;
	// holderPIDs the holder pids given to it per user.
	watched       int
	watchedPerUID map[uint32]int
	holderPIDs    map[uint32]int
	// untracked counts the incident_untracked records written.
	untracked uint64
	// pump reads the kernel's incident records as they come.
	pump *pump
	// sharedWindow and sharedLookups bound the group lookups of
	// port_shared records (maxSharedLookups a minute).
	sharedWindow  time.Time
	sharedLookups int
	// sharedPending are same-program joins waiting out sharedGrace.
	sharedPending []pendingShared
	// queue holds the kernel's records taken from the pump (Next) but not
	// yet handed over: the session writes the failures that came before
	// the first one first, and a recovery looks at the ones behind it.
	queue []events.Record
}

// watchedPort is one open incident's kernel and poll state.
type watchedPort struct {
	key  Port
	pids []int // holders given to the kernel, for signals
	// netns opens the port's network namespace for the poll: a failing
	// process's.
	netns host.Netns
	// polled are holder sockets (inode -> state) whose release only a poll
	// sees; timeWait that the port had TIME_WAIT sockets when it failed.
	polled   map[uint64]*events.Holder
	timeWait bool
	addr     string // the failure's address
	lastPoll time.Time
	// letGo are the pids that took the port and let go at once (PortFree):
	// their socket's close is no holder's release.
	letGo []int
	// uid is the incident's user (its first failing process's); kernel
	// whether the kernel watches the port (its quota let it).
	uid    uint32
	kernel bool
	// cookie is the namespace's cookie (events.Process.NetnsCookie).
	cookie uint64
}

// LiveOptions configure a Live.
type LiveOptions struct {
	// Host is the host name the records carry.
	Host string
	// Quiet is how long after its last attempt an incident nobody tries
	// any more is abandoned; 0 means DefaultQuiet.
	Quiet time.Duration
	// Protected tells whether a port is one the trace was asked to watch
	// (--port): its incidents have the kernel's reserved room.
	Protected func(port uint16) bool
}

// NewLive starts following incidents: it writes its records to out, and
// reads the kernel's incident records (on a goroutine of its own, until
// Drain or the kernel is closed).
func NewLive(out Sink, k Kernel, r Resolver, opts LiveOptions) *Live {
	b := NewLiveBuilder()
	if opts.Quiet > 0 {
		b.Quiet = opts.Quiet
	}
	protected := opts.Protected
	if protected == nil {
		protected = func(uint16) bool { return false }
	}
	b.Protected = protected
	in := &Live{out: out, kernel: k, res: r, host: opts.Host, builder: b, ports: map[Key]*watchedPort{},
		protected: protected, watchedPerUID: map[uint32]int{}, holderPIDs: map[uint32]int{}, pump: newPump(k)}
	in.pump.start()
	return in
}

// Quiet is how long after its last attempt an incident is abandoned.
func (in *Live) Quiet() time.Duration { return in.builder.Quiet }

// Untracked counts the incident_untracked records of this host written.
func (in *Live) Untracked() uint64 { return in.untracked }

// PumpCounts are the signals folded (signal_repeats) and the kernel's
// incident records lost so far.
func (in *Live) PumpCounts() (signalsFolded, lost uint64) { return in.pump.counts() }

// Failed is shown a failure the session is about to write (an explicit
// bind's or listen's: an implicit bind's failure — connect, sendto: no
// local port left — is about the ephemeral range, not a port someone
// serves, and opens no incident). First the incidents nobody tries any
// more are abandoned (the failure may open the port's next), and a dead
// namespace's incident whose inode the failure's reuses ends; then the
// failure counts in its port's incident, and the kernel watches the port
// before anyone reads the failure: a holder killed (and a new listener
// started) by whoever reads it at once is told, not missed. It returns
// the records to write after the failure (incident_untracked), each to
// be shown to Saw.
func (in *Live) Failed(f *events.Failure) (after []events.Record, err error) {
	if err := in.expire(f.Time); err != nil {
		return nil, err
	}
	if a := in.builder.NetnsGone(f); a != nil {
		if err := in.write(a); err != nil {
			return nil, err
		}
		in.close(in.key(a.Netns, a.Proto, a.Port))
	}
	in.builder.Add(f)
	refused, err := in.failed(f)
	for _, u := range in.builder.TakeUntracked() {
		after = append(after, u)
	}
	if refused != nil {
		after = append(after, refused)
	}
	return after, err
}

// Saw is shown every other record the session wrote: a repeats record
// counts attempts, a stop record ends the incidents.
func (in *Live) Saw(rec events.Record) {
	in.builder.Add(rec)
	if u, ok := rec.(*events.IncidentUntracked); ok && u.Host == in.host {
		in.untracked++
	}
}

// write writes one of Live's own records, and accounts for it.
func (in *Live) write(rec events.Record) error {
	err := in.out.Write(rec)
	in.Saw(rec)
	return err
}

// admitKernel tells whether the kernel may watch one more port of uid's,
// and if not, why and the limit reached.
func (in *Live) admitKernel(uid uint32, port uint16) (reason string, limit int) {
	if uid == 0 {
		if in.watched >= in.kernel.MaxPorts() {
			return events.UntrackedFull, in.kernel.MaxPorts()
		}
		return "", 0
	}
	if in.watchedPerUID[uid] >= maxWatchedPerUser {
		return events.UntrackedUserQuota, maxWatchedPerUser
	}
	limit = in.kernel.MaxPorts() - reservedWatched
	if in.protected(port) {
		limit = in.kernel.MaxPorts()
	}
	if in.watched >= limit {
		return events.UntrackedFull, limit
	}
	return "", 0
}

// failed opens (or widens) the kernel's watch of the failure's port, and
// returns the incident_untracked record to write after the failure when
// the kernel may not watch it.
func (in *Live) failed(f *events.Failure) (refused *events.IncidentUntracked, err error) {
	k := Key{Host: f.Host, Netns: f.Process.Netns, Proto: f.Proto, Port: f.Port}
	if !in.builder.IsOpen(k) {
		return nil, nil
	}
	w := in.ports[k]
	if w == nil {
		w = &watchedPort{
			key:    Port{Netns: f.Process.Netns, Proto: f.Proto, Port: f.Port},
			netns:  host.Netns{Inode: f.Process.Netns, Path: "/proc/" + strconv.Itoa(f.Process.PID) + "/ns/net"},
			polled: map[uint64]*events.Holder{},
			addr:   f.Addr,
			uid:    f.Process.UID,
			cookie: f.Process.NetnsCookie,
		}
		if f.Process.Netns == in.res.OwnNetns().Inode {
			w.netns = in.res.OwnNetns()
		}
		in.ports[k] = w
		reason, limit := in.admitKernel(w.uid, f.Port)
		if reason == "" {
			// The kernel's map has MaxPorts entries: what admitKernel
			// counts. Only an error refuses it now.
			ok, err := in.kernel.WatchPort(w.key, w.cookie, nil)
			if err != nil || !ok {
				reason, limit = events.UntrackedFull, in.kernel.MaxPorts()
			}
		}
		if reason != "" {
			// Its failures still tell the incident; no kernel record will.
			return &events.IncidentUntracked{
				Header: events.Header{Type: events.TypeUntracked, Version: events.Version, Time: f.Time, Host: f.Host}, Proto: f.Proto,
				Netns: f.Process.Netns, Addr: f.Addr, Port: f.Port, UID: f.Process.UID,
				Table: events.UntrackedKernel, Reason: reason, Limit: limit,
			}, nil
		}
		w.kernel = true
		in.watched++
		in.watchedPerUID[w.uid]++
	}
	if !w.kernel {
		return nil, nil
	}
	var added []int
	for i := range f.Holders {
		h := &f.Holders[i]
		for _, p := range h.Processes {
			if slices.Contains(w.pids, p.PID) || len(w.pids) >= maxWatchedPIDs {
				continue
			}
			if w.uid != 0 && in.holderPIDs[w.uid] >= maxHolderPIDsPerUser {
				break // its signals go unseen; nothing else does
			}
			w.pids = append(w.pids, p.PID)
			added = append(added, p.PID)
			in.holderPIDs[w.uid]++
		}
		// What the kernel reports going (kernelSees) is not polled.
		if h.Inode != 0 && !in.kernelSees(h) {
			w.polled[h.Inode] = h
		}
		if h.State == "TIME_WAIT" {
			w.timeWait = true
		}
	}
	if f.TimeWait != nil {
		w.timeWait = true
	}
	if len(added) > 0 {
		if _, err := in.kernel.WatchPort(w.key, w.cookie, added); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// Deadline is when the session must wake next: at next, or within an
// incidentStep while an incident is open (its records and polls). A host
// without incidents wakes no more often than before.
func (in *Live) Deadline(next time.Time) time.Time {
	if len(in.queue) > 0 || in.pump.pending() {
		return time.Now()
	}
	if len(in.sharedPending) > 0 {
		next = minTime(next, in.sharedPending[0].due)
	}
	if len(in.ports) == 0 {
		return next
	}
	return minTime(next, time.Now().Add(incidentStep))
}

// kernelSees tells whether the kernel reports h's release: a TCP
// listener's close when the registry records it (incident_sock_state), a
// UDP socket's where udp_lib_unhash is hooked. The rest — bound TCP
// sockets, TIME_WAIT, UDP on the tracepoint backend — is polled.
func (in *Live) kernelSees(h *events.Holder) bool {
	switch {
	case h.Proto == "udp":
		return in.kernel.SeesUDPReleases()
	case h.State == "LISTEN":
		return !in.kernel.NoHolders()
	}
	return false
}

// maxIncidentBatch bounds the kernel records one step hands over.
const maxIncidentBatch = 4096

// Drain ends the following: once the kernel's programs are detached, it
// reads what they reported (the pump stops), hands it over with every
// fold of signals, and polls what the kernel cannot see. flushFolds
// writes the repeats still folded in the kernel, so that a recovery's
// attempts count them. The session's running loop hands records over
// one by one instead (Next, HandleNext), in time order with the failures.
func (in *Live) Drain(flushFolds func(r *events.Recovered) error) error {
	in.pump.close()
	if err := in.pump.drain(); err != nil {
		return err
	}
	for n := 0; n < maxIncidentBatch; n++ {
		rec, _, err := in.Next()
		if err != nil {
			return err
		}
		if rec == nil {
			break
		}
		if err := in.HandleNext(flushFolds); err != nil {
			return err
		}
	}
	return in.Idle(time.Now())
}

// Idle does what does not wait for a kernel record: it abandons the
// incidents nobody tries any more, and polls what the kernel cannot see.
func (in *Live) Idle(now time.Time) error {
	if err := in.expire(now); err != nil {
		return err
	}
	if err := in.sharedDue(now); err != nil {
		return err
	}
	return in.poll(now)
}

// Next returns the kernel's next incident record and its time, without
// handling it: the session first writes the failures that happened
// before it (two ring buffers, one story in time order). It stays next
// until HandleNext; nil means there is none now.
func (in *Live) Next() (events.Record, time.Time, error) {
	if len(in.queue) == 0 {
		var err error
		if in.queue, err = in.pump.take(); err != nil || len(in.queue) == 0 {
			return nil, time.Time{}, err
		}
	}
	return in.queue[0], kernelRecordTime(in.queue[0]), nil
}

// kernelRecordTime is when the kernel saw what rec reports (a fold of
// signals: its last one).
func kernelRecordTime(rec events.Record) time.Time {
	if r, ok := rec.(*events.SignalRepeats); ok {
		return r.Last
	}
	return events.TimeOf(rec)
}

// HandleNext hands over the record Next returned.
func (in *Live) HandleNext(flushFolds func(r *events.Recovered) error) error {
	if len(in.queue) == 0 {
		return nil
	}
	var err error
	in.queue, err = in.kernelRecord(in.queue, 0, flushFolds)
	if len(in.queue) > 0 {
		in.queue[0] = nil // let it go
		in.queue = in.queue[1:]
	}
	return err
}

// expire abandons the incidents nobody tries any more at now (the
// builder's rule): an abandoned record each, and the kernel stops
// watching their ports.
func (in *Live) expire(now time.Time) error {
	for _, a := range in.builder.Expire(now, in.res.Running) {
		k := in.key(a.Netns, a.Proto, a.Port)
		a.ClientImpact = in.impact(k)
		if err := in.write(a); err != nil {
			return err
		}
		in.close(k)
	}
	return nil
}

// kernelRecord hands over batch[i], and returns the batch (which may have
// grown: a recovery looks again at what the kernel queued).
func (in *Live) kernelRecord(batch []events.Record, i int, flushFolds func(r *events.Recovered) error) ([]events.Record, error) {
	switch r := batch[i].(type) {
	case *events.PortFree:
		// The kernel saw bindwatch's own marked check take the port: a
		// note that it was free then, never the recovery.
		r.Host = in.host
		if !in.builder.IsOpen(in.key(r.Netns, r.Proto, r.Port)) {
			return batch, nil
		}
		in.res.Describe(&r.Process)
	case *events.Released:
		r.Host = in.host
		if !in.builder.IsOpen(in.key(r.Netns, r.Proto, r.Port)) {
			// Queued in the kernel before the port was unwatched: the
			// release of whoever took the port after the recovery, or of
			// a holder after the trace ended its incident — not this
			// incident's story.
			return batch, nil
		}
		if w := in.ports[in.key(r.Netns, r.Proto, r.Port)]; w != nil && r.Holder != nil && slices.Contains(w.letGo, r.Holder.PID) {
			return batch, nil // a check's own socket, said in its port_free record
		}
		if r.Closer != nil {
			in.res.Describe(r.Closer)
		}
		if r.Holder != nil {
			in.res.Describe(r.Holder)
		}
		if w := in.ports[in.key(r.Netns, r.Proto, r.Port)]; w != nil {
			w.lastPoll = time.Time{}
		}
	case *events.Signal:
		r.Host = in.host
		if !in.builder.IsOpen(in.key(r.Netns, r.Proto, r.Port)) {
			return batch, nil // likewise queued before the port was unwatched
		}
		in.res.Describe(&r.Sender)
		in.res.Describe(&r.Target)
	case *events.PortShared:
		r.Host = in.host
		if !in.shared(r) {
			return batch, nil // the same program handing over, or its own
		}
	case *events.SignalRepeats:
		r.Host = in.host
		if !in.builder.IsOpen(in.key(r.Netns, r.Proto, r.Port)) {
			return batch, nil
		}
		if r.Sender.PID != 0 {
			in.res.Describe(&r.Sender)
		}
	case *events.Recovered:
		r.Host = in.host
		if err := flushFolds(r); err != nil {
			return batch, err
		}
		k := in.key(r.Netns, r.Proto, r.Port)
		if !in.builder.IsOpen(k) {
			return batch, nil // a second taker, after the recovery
		}
		in.res.Describe(&r.Process)
		var free bool
		if batch, free = in.letGo(k, r, batch, i); free {
			if w := in.ports[k]; w != nil {
				if len(w.letGo) == maxWatchedPIDs { // the oldest check is long closed
					w.letGo = w.letGo[1:]
				}
				w.letGo = append(w.letGo, r.Process.PID)
			}
			return batch, in.write(&events.PortFree{
				Header: events.Header{Type: events.TypePortFree, Version: events.Version, Time: r.Time, Host: r.Host}, Source: r.Source,
				Syscall: r.Syscall, Proto: r.Proto, Netns: r.Netns, Addr: r.Addr, Port: r.Port, Process: r.Process,
			})
		}
		r.Attempts, r.SameProcess = in.builder.Attempts(k, r.Process.PID)
		r.Durations = in.builder.Durations(k, r.Time)
		r.OutageMS = r.ContentionMS
		r.ClientImpact = in.impact(k)
		if err := in.write(r); err != nil {
			return batch, err
		}
		in.close(k)
		return batch, nil
	}
	return batch, in.write(batch[i])
}

// letGo tells whether the taker of a recovery let go of the port at once
// — bindwatch's own checks (wait-free, free) bind and listen with a
// marked socket and close it; so do other port probes — so that the
// recovery is not theirs but that of whoever holds the port next. It is
// so when nothing holds the port now, or when a later taker is queued
// behind it (or arrives while it looks) and the taker has no socket on
// the port. A daemon whose parent listened and exited (nginx, redis
// --daemonize) holds the port through its child: nothing follows it, and
// its recovery stands.
func (in *Live) letGo(k Key, r *events.Recovered, batch []events.Record, i int) ([]events.Record, bool) {
	w := in.ports[k]
	if w == nil {
		return batch, false
	}
	all, err := in.res.SocketsOn(w.netns, w.key.Proto, []uint16{w.key.Port})
	if err != nil {
		return batch, false // the namespace is gone: take the kernel's word
	}
	socks := all[w.key.Port]
	held := map[uint64]string{}
	for inode, state := range socks.Inodes {
		if w.key.Proto == "udp" || state == "LISTEN" {
			held[inode] = state
		}
	}
	if len(held) == 0 {
		return batch, true
	}
	if in.res.Owns(r.Process, held) {
		return batch, false
	}
	later := func() bool {
		for _, rec := range batch[i+1:] {
			if o, ok := rec.(*events.Recovered); ok && o.Netns == r.Netns && o.Proto == r.Proto && o.Port == r.Port {
				return true
			}
		}
		return false
	}
	if later() {
		return batch, true
	}
	// The port is held, but not by the taker: a taker that listened
	// after the batch was read may be what holds it.
	more, _ := in.pump.take()
	batch = append(batch, more...)
	return batch, later()
}

// impact is what clients met at k's port since its incident opened, as
// the kernel counted it: absent where it cannot (before 5.17, or a port
// it does not watch), never 0 for not known.
func (in *Live) impact(k Key) events.ClientImpact {
	var c events.ClientImpact
	w := in.ports[k]
	if w == nil || !w.kernel {
		return c
	}
	n, err := in.kernel.Impact(w.key)
	if err != nil {
		return c
	}
	switch w.key.Proto {
	case "tcp":
		c.RefusedConnections = &n
	case "udp":
		c.DroppedDatagrams = &n
	}
	return c
}

func (in *Live) key(netns uint32, proto string, port uint16) Key {
	return Key{Host: in.host, Netns: netns, Proto: proto, Port: port}
}

func (in *Live) close(k Key) {
	w := in.ports[k]
	if w == nil {
		return
	}
	delete(in.ports, k)
	if !w.kernel {
		return
	}
	in.kernel.UnwatchPort(w.key, w.pids)
	in.watched--
	if in.watchedPerUID[w.uid]--; in.watchedPerUID[w.uid] <= 0 {
		delete(in.watchedPerUID, w.uid)
	}
	if in.holderPIDs[w.uid] -= len(w.pids); in.holderPIDs[w.uid] <= 0 {
		delete(in.holderPIDs, w.uid)
	}
}

// poll looks, every pollInterval, at the ports whose holders only a poll
// can see go: a UDP socket, a TIME_WAIT socket, a TCP socket not in the
// kernel's registry. The ports of one network namespace and protocol are
// looked at in one sock_diag dump (per address family): the poll's cost
// does not grow with the number of incidents.
func (in *Live) poll(now time.Time) error {
	type groupKey struct {
		netns uint32
		proto string
	}
	type group struct {
		ports []uint16
		keys  []Key
	}
	groups := map[groupKey]*group{}
	for k, w := range in.ports {
		if !in.builder.IsOpen(k) { // ended: a stop record, or recovered by poll's eyes
			in.close(k)
			continue
		}
		// A port the kernel does not watch gets no released record from
		// the poll either: its story is its failures (incident_untracked).
		if !w.kernel || len(w.polled) == 0 && !w.timeWait {
			continue
		}
		if now.Sub(w.lastPoll) < pollInterval {
			continue
		}
		gk := groupKey{w.key.Netns, w.key.Proto}
		g := groups[gk]
		if g == nil {
			g = &group{}
			groups[gk] = g
		}
		g.ports = append(g.ports, w.key.Port)
		g.keys = append(g.keys, k)
	}
	for _, g := range groups {
		// Any failing process's namespace path will do; one may be gone.
		var socks map[uint16]*host.PortSockets
		err := errors.New("no namespace")
		tried := map[string]bool{}
		for _, k := range g.keys {
			ns := in.ports[k].netns
			if tried[ns.Path] {
				continue
			}
			tried[ns.Path] = true
			if socks, err = in.res.SocketsOn(ns, k.Proto, g.ports); err == nil {
				break
			}
		}
		if err != nil {
			continue // the namespace is gone: nothing more to see
		}
		for _, k := range g.keys {
			if err := in.polled(in.ports[k], socks[k.Port], now); err != nil {
				return err
			}
		}
	}
	return nil
}

// polled writes what one poll of w's port found gone.
func (in *Live) polled(w *watchedPort, socks *host.PortSockets, now time.Time) error {
	if socks == nil {
		return nil
	}
	precision := pollInterval
	if !w.lastPoll.IsZero() {
		precision = now.Sub(w.lastPoll)
	}
	w.lastPoll = now
	for inode, h := range w.polled {
		if _, ok := socks.Inodes[inode]; ok {
			continue
		}
		delete(w.polled, inode)
		r := &events.Released{
			Header: events.Header{Type: events.TypeReleased, Version: events.Version, Time: now, Host: in.host},
			Source: events.SourcePoll, PrecisionMS: precision.Milliseconds(),
			Proto: w.key.Proto, Netns: w.key.Netns, Addr: h.Addr, Port: w.key.Port, State: h.State, How: events.HowGone,
		}
		if len(h.Processes) > 0 {
			p := h.Processes[0]
			r.Holder = &p
			// The socket is gone; whether its owner is says how.
			if in.res.Running(p) {
				r.How = events.HowClose
			} else {
				r.How = events.HowExit
			}
		}
		if !h.Since.IsZero() {
			r.HeldMS = now.Sub(h.Since).Milliseconds()
		}
		if err := in.write(r); err != nil {
			return err
		}
	}
	if w.timeWait && socks.TimeWait == 0 {
		w.timeWait = false
		r := &events.Released{
			Header: events.Header{Type: events.TypeReleased, Version: events.Version, Time: now, Host: in.host},
			Source: events.SourcePoll, PrecisionMS: precision.Milliseconds(),
			Proto: w.key.Proto, Netns: w.key.Netns, Addr: w.addr, Port: w.key.Port, State: "TIME_WAIT", How: events.HowExpired,
		}
		if err := in.write(r); err != nil {
			return err
		}
	}
	return nil
}
