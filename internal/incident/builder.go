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
	"slices"
	"sort"
	"time"

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
type Builder struct {
	open map[Key]*events.Incident
	all  []*events.Incident
	live bool
	// Untracked counts failures on ports that could not get an incident
	// of their own: MaxOpen were open already (live builders only).
	Untracked uint64
}

// MaxTimeline caps an incident's timeline: a port that fails for days
// keeps counting attempts, but its timeline keeps its first entries and
// its signals, releases and recovery.
const MaxTimeline = 1000

// MaxOpen caps the incidents a live builder keeps open: an unprivileged
// user can fail binds on every port of as many network namespaces as it
// can create.
const MaxOpen = 4096

// NewBuilder returns an empty Builder that keeps every incident, for a
// report or a run's summary.
func NewBuilder() *Builder {
	return &Builder{open: map[Key]*events.Incident{}}
}

// NewLiveBuilder returns a Builder for a tracer that runs for months: it
// forgets incidents once they end, and keeps at most MaxOpen open.
func NewLiveBuilder() *Builder {
	return &Builder{open: map[Key]*events.Incident{}, live: true}
}

// Add accounts for one record: *events.Failure, *events.Repeats,
// *events.Signal, *events.Released, *events.Recovered, *events.Start or
// *events.Stop; others are ignored. A start or stop record ends the
// incidents still open (a session's trace ended).
func (b *Builder) Add(rec any) {
	switch r := rec.(type) {
	case *events.Failure:
		b.failure(r)
	case *events.Repeats:
		b.repeats(r)
	case *events.Signal:
		if in := b.open[Key{r.Host, r.Netns, r.Proto, r.Port}]; in != nil {
			in.Signals = append(in.Signals, r)
			b.mark(in, r.Time, events.MarkSignal, r.Target.PID, 0, signalLine(r))
		}
	case *events.Released:
		if in := b.open[Key{r.Host, r.Netns, r.Proto, r.Port}]; in != nil {
			in.Released = append(in.Released, r)
			b.mark(in, r.Time, events.MarkReleased, holderPID(r), 0, releasedLine(r))
		}
	case *events.Recovered:
		k := Key{r.Host, r.Netns, r.Proto, r.Port}
		if in := b.open[k]; in != nil {
			in.Recovered = r
			// The tracer counted the failures folded up to the recovery.
			in.Attempts = max(in.Attempts, r.Attempts)
			in.State = events.IncidentRecovered
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
	case *events.Start:
		b.endAll(r.Host, r.Time)
	case *events.Stop:
		b.endAll(r.Host, r.Time)
	}
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
// (folded ones included), and the pids that failed in it.
func (b *Builder) Attempts(k Key) (uint64, []int) {
	in := b.open[k]
	if in == nil {
		return 0, nil
	}
	pids := make([]int, 0, len(in.Failing))
	for _, f := range in.Failing {
		pids = append(pids, f.Process.PID)
	}
	return in.Attempts, pids
}

// Finish ends the incidents still open at t (the trace ended without a
// stop record, or is ending now) and returns every incident, in the order
// they opened.
func (b *Builder) Finish(t time.Time) []*events.Incident {
	for k, in := range b.open {
		b.end(k, in, maxTime(t, in.End))
	}
	return b.all
}

func (b *Builder) failure(f *events.Failure) {
	k := Key{f.Host, f.Process.Netns, f.Proto, f.Port}
	in := b.open[k]
	if in == nil && b.live && len(b.open) >= MaxOpen {
		b.Untracked++
		return
	}
	if in == nil {
		in = &events.Incident{
			Type: events.TypeIncident, Version: events.Version, Host: f.Host, Proto: f.Proto,
			Netns: f.Process.Netns, Port: f.Port, Addr: f.Addr, Start: f.Time, End: f.Time,
			State: events.IncidentOpen, Cause: f.Cause, Confidence: f.Confidence, Diagnosis: f.Diagnosis, Hint: f.Hint,
			Failing: []events.IncidentProcess{}, Holders: []events.IncidentHolder{},
			Signals: []*events.Signal{}, Released: []*events.Released{},
		}
		b.open[k] = in
		if !b.live {
			b.all = append(b.all, in)
		}
	}
	in.Attempts++
	p := failingProcess(in, &f.Process, f.Time)
	p.Attempts++
	if !slices.Contains(p.Errnos, f.Errno) {
		p.Errnos = append(p.Errnos, f.Errno)
	}
	for _, h := range f.Holders {
		addHolder(in, &h, &f.Process)
	}
	if f.TimeWait != nil && len(f.Holders) == 0 {
		addHolder(in, &events.Holder{State: "TIME_WAIT", Addr: f.Addr, Port: f.Port, Processes: []events.Process{}}, &f.Process)
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
	var in *events.Incident
	for k, cand := range b.open {
		if k.Host != r.Host || k.Proto != r.Proto || k.Port != r.Port {
			continue
		}
		if in == nil || slices.ContainsFunc(cand.Failing, func(p events.IncidentProcess) bool { return p.Process.PID == r.PID }) {
			in = cand
		}
	}
	if in == nil {
		return
	}
	in.Attempts += r.Count
	p := failingProcess(in, &events.Process{PID: r.PID, Comm: r.Comm}, r.Time)
	p.Attempts += r.Count
	b.mark(in, r.Time, events.MarkRepeats, r.PID, r.Count, repeatsLine(r))
}

func failingProcess(in *events.Incident, p *events.Process, t time.Time) *events.IncidentProcess {
	for i := range in.Failing {
		if in.Failing[i].Process.PID == p.PID {
			in.Failing[i].Last = maxTime(in.Failing[i].Last, t)
			return &in.Failing[i]
		}
	}
	in.Failing = append(in.Failing, events.IncidentProcess{Process: *p, Errnos: []string{}, First: t, Last: t})
	return &in.Failing[len(in.Failing)-1]
}

func addHolder(in *events.Incident, h *events.Holder, failing *events.Process) {
	for _, have := range in.Holders {
		if have.State == h.State && have.Addr == h.Addr && (h.Inode == 0 || have.Inode == h.Inode) &&
			samePIDs(have.Processes, h.Processes) {
			return
		}
	}
	procs := h.Processes
	if procs == nil {
		procs = []events.Process{}
	}
	in.Holders = append(in.Holders, events.IncidentHolder{
		Kind: HolderKind(h, failing), State: h.State, Addr: h.Addr, Inode: h.Inode, Since: h.Since,
		Source: h.Source, Processes: procs, BoundBy: h.BoundBy,
	})
}

func samePIDs(a, b []events.Process) bool {
	return slices.EqualFunc(a, b, func(x, y events.Process) bool { return x.PID == y.PID })
}

// HolderKind says what a holder was, from what the kernel recorded: a
// TIME_WAIT socket; a leftover child that inherited the socket of a
// process that has exited (bound_by) or whose parent exited (orig_ppid);
// an orphan (its parent is init); another instance of the failing program;
// or another service.
func HolderKind(h *events.Holder, failing *events.Process) string {
	if h.State == "TIME_WAIT" {
		return "TIME_WAIT"
	}
	if h.BoundBy != nil {
		return "leftover child"
	}
	for _, p := range h.Processes {
		if p.OrigPPID != 0 {
			return "leftover child"
		}
	}
	for _, p := range h.Processes {
		if p.PPID == 1 {
			return "orphan"
		}
	}
	for _, p := range h.Processes {
		if failing != nil && p.Comm == failing.Comm && p.Comm != "" {
			return "same program"
		}
	}
	return "another service"
}

func (b *Builder) mark(in *events.Incident, t time.Time, kind string, pid int, count uint64, text string) {
	in.End = maxTime(in.End, t)
	in.OutageMS = in.End.Sub(in.Start).Milliseconds()
	if len(in.Timeline) >= MaxTimeline && (kind == events.MarkFailure || kind == events.MarkRepeats) {
		in.TimelineOmitted++
		return
	}
	in.Timeline = append(in.Timeline, events.TimelineEntry{
		AtMS: t.Sub(in.Start).Milliseconds(), Time: t, Kind: kind, PID: pid, Count: count, Text: text,
	})
}

func (b *Builder) end(k Key, in *events.Incident, t time.Time) {
	delete(b.open, k)
	if in.State == events.IncidentOpen {
		in.End = maxTime(in.End, t)
	}
	in.OutageMS = in.End.Sub(in.Start).Milliseconds()
	if in.State == events.IncidentOpen {
		b.mark(in, in.End, events.MarkEnd, 0, 0, "trace ended; the port had not recovered")
	}
	sort.SliceStable(in.Timeline, func(i, j int) bool { return in.Timeline[i].AtMS < in.Timeline[j].AtMS })
}

func (b *Builder) endAll(host string, t time.Time) {
	for k, in := range b.open {
		if k.Host == host {
			b.end(k, in, t)
		}
	}
}

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
func Build(records []any) []*events.Incident {
	b := NewBuilder()
	var last time.Time
	for _, r := range records {
		b.Add(r)
		last = maxTime(last, recordTime(r))
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
	if in := b.open[k]; in != nil {
		return in.Start
	}
	return time.Time{}
}
