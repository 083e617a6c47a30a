// Package incident tells the story of each port outage: it groups
// bindwatch's records — failures, folded repeats, signals sent to holders,
// releases and recoveries — into incidents, one per (host, netns, proto,
// port) from the first failure until the port is held again or the trace
// ends, and writes them as text blocks, incident JSON records or one HTML
// page with a timeline picture each. The same Builder serves the live
// tracer (which ports have an open incident), bindwatch run's summary and
// bindwatch report, which reads the records back from logs.
package incident

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
)

// Key names the port of an incident.
type Key struct {
	Host  string
	Netns uint32
	Proto string
	Port  uint16
}

// Builder groups records into incidents. Records must come in the order a
// session writes them; it is not safe for concurrent use.
//
// An incident ends when the port recovers (a recovered record); when
// nobody tries any more — no failing process has tried for the quiet gap
// (Quiet, or what the session's start record says), or, for the live
// tracer, every failing process has exited and none tried for ExitGrace
// (an abandoned record, which the tracer writes and report reads back); or
// when the trace ends (state open). A failure after that opens a new
// incident. The rule lives here, once: the live tracer asks Expire which
// incidents to abandon, and report and bindwatch run's summary apply the
// quiet gap to the records' own times.
type Builder struct {
	open map[Key]*openIncident
	all  []*events.Incident
	live bool
	// Quiet is the quiet gap for hosts whose start record does not say
	// it; DefaultQuiet unless set.
	Quiet time.Duration
	quiet map[string]time.Duration // per host, from its start record
	// Protected tells whether a port is one the trace was asked to watch
	// (--port): its incidents may use the room kept for root's.
	Protected func(port uint16) bool
	// perUID counts the open incidents of each user (live builders).
	perUID map[uint32]int
	// refused are the ports refused an incident (live builders), with
	// when it was said: said again only after a quiet gap.
	refused map[Key]time.Time
	// untracked are the incident_untracked records not yet taken.
	untracked []*events.IncidentUntracked
	// index finds an open incident's holders and signal kinds without a
	// scan: a report stays linear in the pids of an incident (40,000 of
	// them in a storm). Its failing processes are in openIncident.
	index map[*events.Incident]*incidentIndex
}

// openIncident is an open incident and what ending it needs.
type openIncident struct {
	in *events.Incident
	// last is the last attempt (a failure, or a repeats record's harvest).
	last time.Time
	// failing indexes in.Failing by pid.
	failing map[int]int
	// aliveAt is when Expire last found a failing process alive.
	aliveAt time.Time
	// failureMarks and otherMarks count the timeline's entries of each
	// budget (MaxTimeline).
	failureMarks, otherMarks int
	uid                      uint32 // whose incident it is: the first failing process's user
	cookie                   uint64 // its network namespace's cookie (0: not known)
}

// DefaultQuiet is how long an incident stays open after its last attempt
// when nothing else ends it (--incident-quiet): long enough for a retry
// loop's or a supervisor's back-off, short enough that the next deploy's
// failures are a new incident.
const DefaultQuiet = 10 * time.Second

// ExitGrace is how long after the last attempt an incident whose failing
// processes have all exited is abandoned (at most the quiet gap): a
// supervisor restarts a failed service within it (systemd's RestartSec
// is 100 ms by default), and a shell loop that starts a new process per
// attempt keeps one incident.
const ExitGrace = 2 * time.Second

// MaxTimeline caps an incident's timeline: a port that fails for days
// keeps counting attempts, but its timeline keeps its first entries — up
// to MaxTimeline failures and repeats, and as many other marks (signals,
// releases, notes) — and its end.
const MaxTimeline = 1000

// Each incident keeps at most MaxSignalKinds signals (one per kind, the
// rest counted), MaxReleased releases, MaxHolders holders and MaxFailing
// failing processes (the rest counted): a user who floods a holder with
// signals or fails from thousands of processes makes counts grow, not
// memory. A live builder keeps no timeline and no command lines at all
// (it only decides; report tells).
const (
	MaxReleased = 256
	MaxHolders  = 64
	MaxFailing  = 1024
)

// MaxOpen caps the incidents a live builder keeps open: an unprivileged
// user can fail binds on every port of as many network namespaces as it
// can create. No user but root may have more than MaxOpenPerUser of them
// open, and ReservedOpen of the table are kept for root's incidents and
// those on the --port ports: no user's incidents crowd out another's,
// and root's always have room. An incident that ends frees its place.
const (
	MaxOpen        = 4096
	MaxOpenPerUser = 256
	ReservedOpen   = 1024
)

// NewBuilder returns an empty Builder that keeps every incident, for a
// report or a run's summary.
func NewBuilder() *Builder {
	return &Builder{open: map[Key]*openIncident{}, Quiet: DefaultQuiet, quiet: map[string]time.Duration{},
		perUID: map[uint32]int{}, refused: map[Key]time.Time{}}
}

// NewLiveBuilder returns a Builder for a tracer that runs for months: it
// forgets incidents once they end, and keeps at most MaxOpen open.
func NewLiveBuilder() *Builder {
	b := NewBuilder()
	b.live = true
	return b
}

// quietFor is the quiet gap of host's session.
func (b *Builder) quietFor(host string) time.Duration {
	if q, ok := b.quiet[host]; ok {
		return q
	}
	return b.Quiet
}

// Add accounts for one record: *events.Failure, *events.Repeats,
// *events.Signal, *events.Released, *events.PortFree, *events.Recovered,
// *events.Abandoned, *events.Start or *events.Stop; others are ignored. A
// start or stop record ends the incidents still open (a session's trace
// ended).
func (b *Builder) Add(rec events.Record) {
	switch r := rec.(type) {
	case *events.Failure:
		b.failure(r)
	case *events.Repeats:
		b.repeats(r)
	case *events.Signal:
		if o := b.at(Key{r.Host, r.Netns, r.Proto, r.Port}, r.Time); o != nil {
			b.signal(o.in, r)
		}
	case *events.SignalRepeats:
		if o := b.at(Key{r.Host, r.Netns, r.Proto, r.Port}, r.Time); o != nil {
			b.signalRepeats(o.in, r)
		}
	case *events.Released:
		if o := b.at(Key{r.Host, r.Netns, r.Proto, r.Port}, r.Time); o != nil {
			in := o.in
			if c := r.ResetConnections; c != nil {
				in.ResetConnections = addImpact(in.ResetConnections, c)
			}
			if r.ResetUnknown != "" && in.ResetUnknown == "" {
				in.ResetUnknown = r.ResetUnknown
			}
			if len(in.Released) >= MaxReleased {
				in.ReleasedOmitted++
				return
			}
			if b.live {
				c := *r
				c.Holder, c.Closer = trimmedPtr(r.Holder), trimmedPtr(r.Closer)
				r = &c
			}
			in.Released = append(in.Released, r)
			b.mark(in, r.Time, events.MarkReleased, holderPID(r), 0, releasedLine(r))
		}
	case *events.PortFree:
		// A check (wait-free, free) or a probe saw the port free: a note,
		// never the recovery, nor a failing or new process.
		if o := b.at(Key{r.Host, r.Netns, r.Proto, r.Port}, r.Time); o != nil {
			b.mark(o.in, r.Time, events.MarkPortFree, 0, 0, portFreeLine(r))
		}
	case *events.Recovered:
		k := Key{r.Host, r.Netns, r.Proto, r.Port}
		if o := b.at(k, r.Time); o != nil {
			in := o.in
			in.Recovered = r
			in.ClientImpact = r.ClientImpact
			// The tracer counted the failures folded up to the recovery.
			in.Attempts = max(in.Attempts, r.Attempts)
			in.State = events.IncidentRecovered
			in.Durations = figures(in, r.Time, true)
			b.mark(in, r.Time, events.MarkRecovered, r.Process.PID, 0, recoveredLine(in, r))
			// Repeats harvested for the recovery are stamped when they
			// were reported, just after it; they were folded before it.
			for i := range in.Timeline {
				if e := &in.Timeline[i]; e.Kind == events.MarkRepeats && e.Time.After(r.Time) {
					e.Time, e.AtMS = r.Time, r.Time.Sub(in.Start).Milliseconds()
				}
			}
			in.End = r.Time
			b.end(k, in, r.Time)
		}
	case *events.IncidentUntracked:
		// The incident a report builds from the failures was not tracked
		// live: its signals, release and recovery are not known.
		if o := b.open[Key{r.Host, r.Netns, r.Proto, r.Port}]; o != nil && o.in.Untracked == "" {
			o.in.Untracked, o.in.UntrackedReason = r.Table, r.Reason
			b.mark(o.in, r.Time, events.MarkUntracked, 0, 0, "not tracked: "+events.UntrackedWhy(r.Table, r.Reason)+"; "+untrackedLoss(r.Table))
		}
	case *events.Abandoned:
		k := Key{r.Host, r.Netns, r.Proto, r.Port}
		if o := b.open[k]; o != nil && o.in.Start.Equal(r.Start) {
			o.in.ClientImpact = r.ClientImpact
			b.abandon(k, o, r.Reason, r.Time, time.Duration(r.QuietMS)*time.Millisecond)
		}
	case *events.Start:
		b.endAll(r.Host, r.Time)
		if r.IncidentQuietMS > 0 {
			b.quiet[r.Host] = time.Duration(r.IncidentQuietMS) * time.Millisecond
		} else {
			delete(b.quiet, r.Host)
		}
	case *events.Stop:
		b.endAll(r.Host, r.Time)
	}
}

// at is the open incident on k at time t: none when nobody had tried for
// the quiet gap before t (the incident is then abandoned).
func (b *Builder) at(k Key, t time.Time) *openIncident {
	o := b.open[k]
	if o == nil {
		return nil
	}
	if q := b.quietFor(k.Host); t.Sub(o.last) > q {
		b.abandon(k, o, events.AbandonedQuiet, o.last.Add(q), q)
		return nil
	}
	return o
}

// abandon ends o: nobody tries any more (reason), seen at t.
func (b *Builder) abandon(k Key, o *openIncident, reason string, t time.Time, quiet time.Duration) {
	in := o.in
	in.State, in.AbandonedReason = events.IncidentAbandoned, reason
	b.mark(in, t, events.MarkAbandoned, 0, 0, fmt.Sprintf("abandoned: %s; the port did not recover", events.AbandonedWhy(reason, quiet.Milliseconds())))
	// The incident lasted while someone tried: until the last attempt.
	in.End = maxTime(in.Start, o.last)
	b.end(k, in, in.End)
}

// Expire lists the open incidents nobody tries any more at now, as the
// abandoned records that end them (Add ends them): no attempt for the
// quiet gap, or — when alive is given (the live tracer) — every failing
// process has exited and none tried for ExitGrace. alive is asked at most
// once a second per incident.
func (b *Builder) Expire(now time.Time, alive func(events.Process) bool) []*events.Abandoned {
	var out []*events.Abandoned
	for k, o := range b.open {
		q := b.quietFor(k.Host)
		since := now.Sub(o.last)
		reason := ""
		switch {
		case since > q:
			reason = events.AbandonedQuiet
		case alive != nil && since >= min(ExitGrace, q) && now.Sub(o.aliveAt) >= time.Second:
			reason = events.AbandonedExited
			for _, f := range o.in.Failing {
				if alive(f.Process) {
					reason, o.aliveAt = "", now
					break
				}
			}
		}
		if reason == "" {
			continue
		}
		in := o.in
		out = append(out, &events.Abandoned{
			Header: events.Header{Type: events.TypeAbandoned, Version: events.Version, Time: now, Host: k.Host}, Proto: k.Proto,
			Netns: k.Netns, Addr: in.Addr, Port: k.Port, Start: in.Start, LastAttempt: o.last, Reason: reason,
			Attempts: in.Attempts, QuietMS: q.Milliseconds(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// NetnsGone returns the abandoned record that ends the open incident at
// f's port when f's network namespace is another than the incident's
// with the same inode (their cookies differ): the kernel reuses a freed
// namespace's inode, and a namespace is freed only when no process is
// left in it, so the incident's failing processes have all exited. Nil
// otherwise, or where either cookie is not known.
func (b *Builder) NetnsGone(f *events.Failure) *events.Abandoned {
	k := Key{f.Host, f.Process.Netns, f.Proto, f.Port}
	o := b.open[k]
	if o == nil || o.cookie == 0 || f.Process.NetnsCookie == 0 || o.cookie == f.Process.NetnsCookie {
		return nil
	}
	in := o.in
	return &events.Abandoned{
		Header: events.Header{Type: events.TypeAbandoned, Version: events.Version, Time: f.Time, Host: k.Host}, Proto: k.Proto,
		Netns: k.Netns, Addr: in.Addr, Port: k.Port, Start: in.Start, LastAttempt: o.last, Reason: events.AbandonedExited,
		Attempts: in.Attempts, QuietMS: b.quietFor(k.Host).Milliseconds(),
	}
}

// admit tells whether a live builder has room for f's new incident, and
// if not, why and the limit reached.
func (b *Builder) admit(f *events.Failure) (reason string, limit int) {
	uid := f.Process.UID
	if uid == 0 {
		if len(b.open) >= MaxOpen {
			return events.UntrackedFull, MaxOpen
		}
		return "", 0
	}
	if b.perUID[uid] >= MaxOpenPerUser {
		return events.UntrackedUserQuota, MaxOpenPerUser
	}
	limit = MaxOpen - ReservedOpen
	if b.Protected != nil && b.Protected(f.Port) {
		limit = MaxOpen
	}
	if len(b.open) >= limit {
		return events.UntrackedFull, limit
	}
	return "", 0
}

// refuse notes that f's port got no incident: an incident_untracked
// record, unless one was said for the port within the quiet gap (the
// ports said are bounded too: past MaxOpen of them, the oldest go).
func (b *Builder) refuse(k Key, f *events.Failure, reason string, limit int) {
	q := b.quietFor(k.Host)
	if said, ok := b.refused[k]; ok && f.Time.Sub(said) <= q {
		b.refused[k] = f.Time
		return
	}
	if len(b.refused) >= MaxOpen {
		for rk, said := range b.refused {
			if f.Time.Sub(said) > q || len(b.refused) >= MaxOpen {
				delete(b.refused, rk)
			}
		}
	}
	b.refused[k] = f.Time
	b.untracked = append(b.untracked, &events.IncidentUntracked{
		Header: events.Header{Type: events.TypeUntracked, Version: events.Version, Time: f.Time, Host: f.Host}, Proto: f.Proto,
		Netns: f.Process.Netns, Addr: f.Addr, Port: f.Port, UID: f.Process.UID,
		Table: events.UntrackedIncidents, Reason: reason, Limit: limit,
	})
}

// TakeUntracked returns the incident_untracked records of the failures
// added since the last call (live builders), for the tracer to write.
func (b *Builder) TakeUntracked() []*events.IncidentUntracked {
	out := b.untracked
	b.untracked = nil
	return out
}

// Open lists the ports with an open incident.
func (b *Builder) Open() []Key {
	keys := make([]Key, 0, len(b.open))
	for k := range b.open {
		keys = append(keys, k)
	}
	return keys
}

// IsOpen tells whether k has an open incident.
func (b *Builder) IsOpen(k Key) bool { return b.open[k] != nil }

// Attempts is how many failures the open incident on k has counted so far
// (folded ones included), and whether pid failed in it.
func (b *Builder) Attempts(k Key, pid int) (attempts uint64, failed bool) {
	o := b.open[k]
	if o == nil {
		return 0, false
	}
	_, failed = o.failing[pid]
	return o.in.Attempts, failed
}

// Finish ends the incidents still open at t (the trace ended without a
// stop record, or is ending now) and returns every incident, in the order
// they opened: abandoned if nobody had tried for the quiet gap, else open.
func (b *Builder) Finish(t time.Time) []*events.Incident {
	for k, o := range b.open {
		if b.at(k, t) != nil {
			b.end(k, o.in, maxTime(t, o.in.End))
		}
	}
	return b.all
}

func (b *Builder) failure(f *events.Failure) {
	k := Key{f.Host, f.Process.Netns, f.Proto, f.Port}
	o := b.at(k, f.Time)
	if o == nil && b.live {
		if reason, limit := b.admit(f); reason != "" {
			b.refuse(k, f, reason, limit)
			return
		}
	}
	if o == nil {
		in := &events.Incident{
			Type: events.TypeIncident, Version: events.Version, Host: f.Host, Proto: f.Proto,
			Netns: f.Process.Netns, Port: f.Port, Addr: f.Addr, Start: f.Time, End: f.Time,
			State: events.IncidentOpen, Cause: f.Cause, Confidence: f.Confidence, Diagnosis: f.Diagnosis, Hint: f.Hint,
			Failing: []events.IncidentProcess{}, Holders: []events.IncidentHolder{},
			Signals: []*events.Signal{}, Released: []*events.Released{},
		}
		o = &openIncident{in: in, last: f.Time, failing: map[int]int{}, uid: f.Process.UID, cookie: f.Process.NetnsCookie}
		b.open[k] = o
		b.perUID[o.uid]++
		if !b.live {
			b.all = append(b.all, in)
		}
	}
	in := o.in
	o.last = maxTime(o.last, f.Time)
	in.Attempts++
	if p := o.failingProcess(&f.Process, f.Time, b.live); p != nil {
		p.Attempts++
		if !slices.Contains(p.Errnos, f.Errno) && len(p.Errnos) < 8 {
			p.Errnos = append(p.Errnos, f.Errno)
		}
	}
	for _, h := range f.Holders {
		b.addHolder(in, &h, &f.Process)
		if h.State == "TIME_WAIT" && h.RemainingMS > 0 {
			b.timeWaitExpires(in, h.Addr, f.Time.Add(time.Duration(h.RemainingMS)*time.Millisecond))
		}
	}
	if f.TimeWait != nil && len(f.Holders) == 0 {
		b.addHolder(in, &events.Holder{State: "TIME_WAIT", Addr: f.Addr, Port: f.Port, Processes: []events.Process{}}, &f.Process)
		if f.TimeWait.MaxRemainingMS > 0 {
			b.timeWaitExpires(in, f.Addr, f.Time.Add(time.Duration(f.TimeWait.MaxRemainingMS)*time.Millisecond))
		}
	}
	if in.Diagnosis == "" {
		in.Diagnosis, in.Hint = f.Diagnosis, f.Hint
	}
	if in.Cause == "" {
		in.Cause = f.Cause
	}
	b.mark(in, f.Time, events.MarkFailure, f.Process.PID, 1, failureLine(f))
}

// repeats adds folded failures to the open incident their process failed
// in (a repeats record names no network namespace).
func (b *Builder) repeats(r *events.Repeats) {
	var o *openIncident
	for k, cand := range b.open {
		if k.Host != r.Host || k.Proto != r.Proto || k.Port != r.Port {
			continue
		}
		if _, failed := cand.failing[r.PID]; o == nil || failed {
			o = cand
		}
	}
	if o == nil {
		return
	}
	// Folded failures happened before the repeats record was written, by
	// up to the tick: they may still belong to an incident the quiet gap
	// is about to end.
	in := o.in
	o.last = maxTime(o.last, r.Time)
	in.Attempts += r.Count
	from := in.Start // the process's first failure, where it is known
	if p := o.failingProcess(&events.Process{PID: r.PID, Comm: r.Comm}, r.Time, b.live); p != nil {
		p.Attempts += r.Count
		from = p.First
	}
	n := len(in.Timeline)
	b.mark(in, r.Time, events.MarkRepeats, r.PID, r.Count, repeatsLine(r, in.Start, from))
	if len(in.Timeline) > n { // listed: with the span its failures happened in
		e := &in.Timeline[n]
		e.First, e.Last = r.First, r.Last
	}
}

// failingProcess is p's entry among the incident's failing processes,
// added if new.
// failingProcess is p's entry among the incident's failing processes,
// added if new; past MaxFailing of them, nil (counted in FailingOmitted).
func (o *openIncident) failingProcess(p *events.Process, t time.Time, live bool) *events.IncidentProcess {
	in := o.in
	if i, ok := o.failing[p.PID]; ok {
		in.Failing[i].Last = maxTime(in.Failing[i].Last, t)
		return &in.Failing[i]
	}
	if len(in.Failing) >= MaxFailing {
		in.FailingOmitted++
		return nil
	}
	kept := *p
	if live {
		kept = trimmed(p)
	}
	o.failing[p.PID] = len(in.Failing)
	in.Failing = append(in.Failing, events.IncidentProcess{Process: kept, Errnos: []string{}, First: t, Last: t})
	return &in.Failing[len(in.Failing)-1]
}

// trimmed is what a live builder keeps of a process: who it is, not its
// command line (which its user makes as long as they like).
func trimmed(p *events.Process) events.Process {
	return events.Process{PID: p.PID, TID: p.TID, PPID: p.PPID, UID: p.UID, Comm: p.Comm, Netns: p.Netns,
		StartTime: p.StartTime, OrigPPID: p.OrigPPID}
}

func trimmedPtr(p *events.Process) *events.Process {
	if p == nil {
		return nil
	}
	t := trimmed(p)
	return &t
}

// addHolder adds h to the incident's holders unless it is there: the same
// state, address and processes, and the same socket (inode) when h names
// one. Past MaxHolders, it is counted (HoldersOmitted).
func (b *Builder) addHolder(in *events.Incident, h *events.Holder, failing *events.Process) {
	x := b.indexOf(in)
	anyInode := holderKey(h.State, h.Addr, 0, h.Processes)
	if x.holders[anyInode] && (h.Inode == 0 || x.holders[holderKey(h.State, h.Addr, h.Inode, h.Processes)]) {
		return
	}
	if len(in.Holders) >= MaxHolders {
		in.HoldersOmitted++
		return
	}
	procs := h.Processes
	if procs == nil {
		procs = []events.Process{}
	}
	x.holders[anyInode] = true
	x.holders[holderKey(h.State, h.Addr, h.Inode, h.Processes)] = true
	boundBy := h.BoundBy
	if b.live {
		procs = make([]events.Process, 0, min(len(h.Processes), 16))
		for i := range h.Processes[:min(len(h.Processes), 16)] {
			procs = append(procs, trimmed(&h.Processes[i]))
		}
		boundBy = trimmedPtr(h.BoundBy)
	}
	in.Holders = append(in.Holders, events.IncidentHolder{
		Kind: HolderKind(h, failing), State: h.State, Addr: h.Addr, Inode: h.Inode, Since: h.Since,
		Source: h.Source, Processes: procs, BoundBy: boundBy,
	})
}

// timeWaitExpires notes when the TIME_WAIT sockets on addr expire, as a
// failure saw them: the last to expire is when the port is free of them.
func (b *Builder) timeWaitExpires(in *events.Incident, addr string, at time.Time) {
	x := b.indexOf(in)
	i, ok := x.timeWait[addr]
	if !ok {
		i = -1
		for j := len(in.Holders) - 1; j >= 0; j-- { // just added: found at once
			if h := &in.Holders[j]; h.State == "TIME_WAIT" && h.Addr == addr {
				i = j
				break
			}
		}
		if i < 0 {
			return
		}
		x.timeWait[addr] = i
	}
	if h := &in.Holders[i]; at.After(h.Expires) {
		h.Expires = at
	}
}

// HolderKind says what a holder was: the diagnosis's rule
// (diagnose.HolderKind), the one home for telling a leftover from the
// running instance.
func HolderKind(h *events.Holder, failing *events.Process) string {
	return diagnose.HolderKind(h, failing)
}

// mark adds a timeline entry, and says whether it did (a live builder
// keeps none; past its budget, an entry is counted in TimelineOmitted).
func (b *Builder) mark(in *events.Incident, t time.Time, kind string, pid int, count uint64, text string) bool {
	b.extend(in, t)
	if b.live {
		return false
	}
	switch kind {
	case events.MarkRecovered, events.MarkAbandoned, events.MarkUntracked, events.MarkEnd:
		// Once each: the incident's end.
	default:
		o := b.open[Key{in.Host, in.Netns, in.Proto, in.Port}]
		if o == nil || o.in != in {
			break
		}
		n := &o.otherMarks
		if kind == events.MarkFailure || kind == events.MarkRepeats {
			n = &o.failureMarks
		}
		if *n >= MaxTimeline {
			in.TimelineOmitted++
			return false
		}
		*n++
	}
	in.Timeline = append(in.Timeline, events.TimelineEntry{
		AtMS: t.Sub(in.Start).Milliseconds(), Time: t, Kind: kind, PID: pid, Count: count, Text: text,
	})
	return true
}

// extend makes the incident last until t at least.
func (b *Builder) extend(in *events.Incident, t time.Time) {
	in.End = maxTime(in.End, t)
	in.ContentionMS = in.End.Sub(in.Start).Milliseconds()
	in.OutageMS = in.ContentionMS
}

func (b *Builder) end(k Key, in *events.Incident, t time.Time) {
	if o := b.open[k]; o != nil {
		if b.perUID[o.uid]--; b.perUID[o.uid] <= 0 {
			delete(b.perUID, o.uid)
		}
	}
	delete(b.open, k)
	delete(b.index, in)
	if in.Untracked != "" && in.State != events.IncidentRecovered {
		in.State = events.IncidentNotTracked
	}
	if in.State == events.IncidentOpen {
		in.End = maxTime(in.End, t)
	}
	if in.State == events.IncidentOpen {
		b.mark(in, in.End, events.MarkEnd, 0, 0, "trace ended; the port had not recovered")
	}
	in.Durations = figures(in, in.End, in.State == events.IncidentRecovered)
	in.OutageMS = in.ContentionMS
	sort.SliceStable(in.Timeline, func(i, j int) bool { return in.Timeline[i].AtMS < in.Timeline[j].AtMS })
}

func (b *Builder) endAll(host string, t time.Time) {
	for k, o := range b.open {
		if k.Host == host && b.at(k, t) != nil {
			b.end(k, o.in, t)
		}
	}
}

// Durations are the open incident on k's figures were it to recover at
// t: the live tracer completes a recovered record with them.
func (b *Builder) Durations(k Key, t time.Time) events.Durations {
	if o := b.open[k]; o != nil {
		return figures(o.in, t, true)
	}
	return events.Durations{}
}

// figures are in's durations at t: contention from the first failure;
// unserved (only when recovered at t) from the last release before t;
// drain from the first signal to a holder until that holder's release —
// the release of the process signalled, or with a single holder the
// first release after the signal.
func figures(in *events.Incident, t time.Time, recovered bool) events.Durations {
	d := events.Durations{ContentionMS: t.Sub(in.Start).Milliseconds()}
	var last *events.Released
	for _, r := range in.Released {
		if !r.Time.After(t) && (last == nil || r.Time.After(last.Time)) {
			last = r
		}
	}
	if recovered && last != nil {
		d.UnservedMS = ptr(max(t.Sub(last.Time).Milliseconds(), 0))
	}
	var first *events.Signal
	for _, s := range in.Signals {
		if !s.Time.After(t) && (first == nil || s.Time.Before(first.Time)) {
			first = s
		}
	}
	if first == nil {
		return d
	}
	var drained, after *events.Released
	for _, r := range in.Released {
		if r.Time.Before(first.Time) || r.Time.After(t) {
			continue
		}
		if after == nil || r.Time.Before(after.Time) {
			after = r
		}
		by := (r.Holder != nil && r.Holder.PID == first.Target.PID) || (r.Closer != nil && r.Closer.PID == first.Target.PID)
		if by && (drained == nil || r.Time.Before(drained.Time)) {
			drained = r
		}
	}
	if drained == nil && len(in.Holders) <= 1 {
		drained = after
	}
	if drained != nil {
		d.DrainMS = ptr(drained.Time.Sub(first.Time).Milliseconds())
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func holderPID(r *events.Released) int {
	if r.Holder != nil {
		return r.Holder.PID
	}
	return 0
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Build groups the records of a log into incidents; incidents still open
// at the log's end end with its last record.
func Build(records []events.Record) []*events.Incident {
	b := NewBuilder()
	var last time.Time
	for _, r := range records {
		b.Add(r)
		last = maxTime(last, events.TimeOf(r))
	}
	return b.Finish(last)
}

// Select keeps the incidents on a wanted port whose window overlaps
// [since, until] (a zero bound is open).
func Select(incidents []*events.Incident, port func(uint16) bool, since, until time.Time) []*events.Incident {
	var out []*events.Incident
	for _, in := range incidents {
		if port != nil && !port(in.Port) {
			continue
		}
		if !since.IsZero() && in.End.Before(since) {
			continue
		}
		if !until.IsZero() && in.Start.After(until) {
			continue
		}
		out = append(out, in)
	}
	return out
}

// Started is when the open incident on k began (its first failure).
func (b *Builder) Started(k Key) time.Time {
	if o := b.open[k]; o != nil {
		return o.in.Start
	}
	return time.Time{}
}

// addImpact adds c to sum (nil: none yet): counts add up, first and last
// span both.
func addImpact(sum, c *events.ImpactCount) *events.ImpactCount {
	out := &events.ImpactCount{}
	if sum != nil {
		*out = *sum
	}
	out.Count += c.Count
	if !c.First.IsZero() && (out.First.IsZero() || c.First.Before(out.First)) {
		out.First = c.First
	}
	if c.Last.After(out.Last) {
		out.Last = c.Last
	}
	return out
}
