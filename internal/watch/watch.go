// Package watch runs bindwatch's pipeline as one straight line: attach the
// BPF programs, read failures from the ring buffer, decode them, resolve
// both sides, and write them out — with the bookkeeping that makes sure
// folded and lost failures are still counted in the output.
package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/redact"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// Sink receives the session's records, one call each: *events.Start,
// *events.Failure, *events.Repeats, *events.Lost, the incidents' records,
// *events.Stop. A
// sink.Set is one (the file or standard output, syslog, metrics: it
// counts what it cannot write instead of failing, so tracing never stops
// for its output); bindwatch run tallies them for its summary.
type Sink interface {
	Write(rec events.Record) error
}

// Options configure a Session.
type Options struct {
	Tracer tracer.Config
	// Out receives the records.
	Out Sink
	// ReadyFile, if set, is created once tracing is live (and the start
	// record written), and removed when the session ends. It must not
	// exist: it is created exclusively and never through a symlink.
	ReadyFile string
	// Tick is how often folded repeats and lost counts are reported; 0
	// means the fold window, or one second.
	Tick time.Duration
	// StopWithin bounds the stop: once Run's context is done, failures
	// still queued in the ring buffer are reported for at most this long;
	// the rest are counted as unread in the stop record. 0 reports them
	// all (bindwatch run, whose command has exited).
	StopWithin time.Duration
	// Hurry, when closed, ends the stop's draining at once (a second
	// Ctrl-C): what is still queued is counted as unread.
	Hurry <-chan struct{}
	// Stopping, if set, is told when a bounded stop (StopWithin) begins
	// with failures still queued: how many, so that a person can be told a
	// second Ctrl-C ends the wait.
	Stopping func(queued uint64)
	// Redact removes secrets from every process reported; nil is the
	// default rules.
	Redact *redact.Rules
	// IncidentQuiet is how long after its last attempt an incident nobody
	// tries any more is abandoned; 0 means incident.DefaultQuiet.
	IncidentQuiet time.Duration
	// Job is the command whose process tree is traced (bindwatch run:
	// Tracer.PIDs is bindwatch itself, with FollowChildren). A holder in
	// that tree is named as started by the same command.
	Job string
	// Unit, if set, reports only the failures of processes in that systemd
	// unit (events.Process.Unit): a system unit, "nginx.service", or a
	// user's, "user@1000.service/app.service". The tracer still reads
	// every failure: the filter is applied here, after resolving each
	// one's cgroup (the kernel's cgroup id of the failing process, so that
	// one that has exited is still placed), and the left-out failures are
	// counted in the stop record (other_units).
	Unit string
	// ShareIterators pins a copy of the resolver's BPF iterators for the
	// one-shot commands while the session runs (iterload.Share): a
	// `bindwatch who` then opens them instead of loading its own. While
	// another tracer shares already, the session tries again every
	// shareRetry and takes over when that one stops. Told to ShareFailed
	// when it cannot be done for a reason other than those two or no bpffs
	// at /sys/fs/bpf.
	ShareIterators bool
	ShareFailed    func(error)
}

// Session is an attached tracer and the state of what it has reported.
type Session struct {
	opts    Options
	tracer  *tracer.Tracer
	enrich  *enricher
	host    string
	started time.Time
	ready   *readyFile

	reported   uint64 // bind_failure records written
	unresolved uint64 // of those, failures resolve could not look up
	folded     uint64 // failures in repeats records written
	lost       uint64 // failures in lost records written
	// incidentLost is the incident records lost so far, as lost records
	// said them (the kernel's incident ring and the pump's queue).
	incidentLost uint64
	otherUnits   uint64 // failures left out by Unit
	// inUnit remembers, under Unit, which pids' failures were in the unit
	// and which were not, for the repeats the kernel folds (they carry a
	// pid, not a cgroup). Bounded: past maxUnitPIDs it starts over.
	inUnit map[int]bool
	// heldFolds are folds harvested for another port's recovery, written
	// at the next tick (flushFolds).
	heldFolds []events.Repeats
	// out is where the records go (Options.Out). Every record written is
	// shown to incidents too (write, report): no sink is wrapped.
	out Sink
	// incidents follows the incidents (internal/incident): it writes its
	// own records to out, and has the kernel watch the ports that failed.
	incidents *incident.Live
	// pending is a failure read from the ring buffer (into pendingBuf)
	// and not yet reported: an incident record before it goes first.
	pending    *tracer.Record
	pendingBuf tracer.Record
	// caughtUp: the last catchUp emptied both ring buffers, so Run may
	// wait for the kernel.
	caughtUp bool
	// shared is the copy of the iterators pinned for the commands
	// (Options.ShareIterators), or nil.
	shared *sharedIterators
}

// Start attaches the tracer and writes the start record: from its return
// on, every failure is caught.
func Start(opts Options) (*Session, error) {
	if opts.ReadyFile != "" {
		if err := checkReadyFile(opts.ReadyFile); err != nil {
			return nil, err
		}
	}
	resolve.ProbeKernel()
	t, err := tracer.Open(opts.Tracer)
	if err != nil {
		return nil, err
	}
	hostname, _ := os.Hostname()
	enrich, err := newEnricher(opts.Redact)
	if err != nil {
		t.Close()
		return nil, err
	}
	if opts.Job != "" && opts.Tracer.FollowChildren {
		self := os.Getpid()
		enrich.r.SetJob(&diagnose.Job{Command: opts.Job, Contains: func(pid int) bool { return pid != self && t.Traced(pid) }})
	}
	s := &Session{opts: opts, out: opts.Out, tracer: t, enrich: enrich, host: hostname, started: time.Now(), caughtUp: true}
	if opts.ShareIterators {
		s.shared = shareIterators(opts.ShareFailed)
	}
	s.incidents = incident.NewLive(s.out, incidentKernel{t}, incidentResolver{enrich.r}, incident.LiveOptions{
		Host: hostname, Quiet: opts.IncidentQuiet, Protected: func(port uint16) bool { return tracer.InPortRanges(opts.Tracer.Ports, port) },
	})
	if s.opts.Tick == 0 {
		s.opts.Tick = max(opts.Tracer.Fold, time.Second)
	}
	start := &events.Start{
		Header: events.Header{Type: events.TypeStart, Version: events.Version, Time: s.started, Host: hostname},
		Kernel: host.KernelRelease(), Backend: t.Backend(), Skipped: t.Skipped(), Limits: t.Limits(),
		PID: os.Getpid(), FoldMS: opts.Tracer.Fold.Milliseconds(), IncidentQuietMS: s.incidents.Quiet().Milliseconds(),
		Filters: filters(&opts.Tracer), HoldersRecorded: !opts.Tracer.NoHolders,
	}
	if len(start.Skipped) == 0 {
		start.Skipped = nil
	}
	if err := procPidNamespace(); err != nil {
		// Traced all the same: the kernel's record of the failing
		// process and the port stands; the names from /proc do not.
		if start.Limits == nil {
			start.Limits = map[string]string{}
		}
		start.Limits["pid_namespace"] = err.Error()
	}
	if err := s.write(start); err != nil {
		s.close()
		return nil, fmt.Errorf("write start record: %w", err)
	}
	if opts.ReadyFile != "" {
		if s.ready, err = createReadyFile(opts.ReadyFile, t.Backend()); err != nil {
			// The start record is out: end the session as every session ends.
			s.opts.StopWithin = time.Nanosecond
			if stopErr := s.stop(); stopErr != nil {
				err = errors.Join(err, stopErr)
			}
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// Tracer gives access to the attached tracer (to add pids to follow).
func (s *Session) Tracer() *tracer.Tracer { return s.tracer }

// Run reports failures until ctx is done, then stops: see stop.
func (s *Session) Run(ctx context.Context) error {
	defer s.close()
	// A Read waiting for the kernel returns at once when ctx ends.
	unblock := context.AfterFunc(ctx, func() { s.tracer.Flush() })
	defer unblock()
	next := time.Now().Add(s.opts.Tick)
	for ctx.Err() == nil {
		if s.caughtUp && s.pending == nil {
			// Wait for the kernel.
			s.tracer.SetDeadline(s.incidents.Deadline(next))
			err := s.tracer.Read(&s.pendingBuf)
			switch {
			case err == nil:
				s.pending = &s.pendingBuf
			case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, tracer.ErrFlushed):
			default:
				return fmt.Errorf("read ring buffer: %w", err)
			}
		}
		var err error
		if s.caughtUp, err = s.catchUp(catchUpBatch); err != nil {
			return err
		}
		if time.Now().After(next) {
			if err := s.tick(); err != nil {
				return err
			}
			next = time.Now().Add(s.opts.Tick)
		}
		// The kernel's incident records were written by catchUp, in
		// order with the failures; what only a poll sees, and incidents
		// nobody tries any more, are looked at now.
		if err := s.incidents.Idle(time.Now()); err != nil {
			return err
		}
	}
	return s.stop()
}

// catchUpBatch is how many records catchUp writes before the session
// looks at its clock (the tick, a stop) again.
const catchUpBatch = 256

// catchUp writes what the two ring buffers hold now — failures, and the
// kernel's incident records — merged in time order, so that a recovery is
// never written before the failure that came before it (nor does that
// failure then open a second incident), up to n records. It says whether
// both are empty. A failure read but later than the next incident record
// waits in s.pending.
func (s *Session) catchUp(n int) (bool, error) {
	for ; n > 0; n-- {
		if s.pending == nil {
			ok, err := s.readNow()
			if err != nil {
				return false, err
			}
			if ok {
				s.pending = &s.pendingBuf
			}
		}
		rec, at, err := s.incidents.Next()
		if err != nil {
			return false, err
		}
		switch {
		case s.pending == nil && rec == nil:
			return true, nil
		case rec == nil || (s.pending != nil && !s.pending.Failure.Time.After(at)):
			f := s.pending
			s.pending = nil
			if err := s.report(f); err != nil {
				return false, err
			}
		default:
			if err := s.incidents.HandleNext(s.flushFolds); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}

// readNow reads a failure into s.pendingBuf if one is queued, without
// waiting.
func (s *Session) readNow() (bool, error) {
	s.tracer.SetDeadline(time.Now())
	for range 2 { // a Flush (Run's wake-up) is not the end of the queue
		err := s.tracer.Read(&s.pendingBuf)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, tracer.ErrFlushed):
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			return false, nil
		default:
			return false, fmt.Errorf("read ring buffer: %w", err)
		}
	}
	return false, nil
}

// report writes one failure.
func (s *Session) report(rec *tracer.Record) error {
	f := new(events.Failure) // a sink may keep it; rec is read into again
	*f = rec.Failure
	f.Host = s.host
	resolved := s.enrich.failure(f)
	if s.opts.Unit != "" {
		in := UnitMatches(s.opts.Unit, &f.Process)
		if s.inUnit == nil || len(s.inUnit) >= maxUnitPIDs {
			s.inUnit = make(map[int]bool)
		}
		s.inUnit[f.Process.PID] = in
		if !in {
			s.otherUnits++
			return nil
		}
	}
	if !resolved {
		s.unresolved++
	}
	s.reported++
	if f.Destination != nil {
		// An implicit bind's failure (connect, sendto: no local port
		// left) is about the ephemeral range, not a port someone serves:
		// it opens no incident.
		return s.out.Write(f)
	}
	// The incidents see the failure before it is written: the kernel
	// watches its port before anyone reads it (a holder killed at once
	// is told, not missed). What they have to say after it
	// (incident_untracked) follows it.
	// A failure the incidents could not take (the kernel refused to
	// watch its holder) is still written before the session ends with
	// that error: no failure is lost to an incident's fault.
	after, ierr := s.incidents.Failed(f)
	err := s.out.Write(f)
	for _, rec := range after {
		if werr := s.write(rec); werr != nil && err == nil {
			err = werr
		}
	}
	return errors.Join(ierr, err)
}

// write writes a record other than a failure, and shows it to the
// incidents (a repeats record counts attempts, the stop record ends them).
func (s *Session) write(rec events.Record) error {
	err := s.out.Write(rec)
	s.incidents.Saw(rec)
	return err
}

// tick reports the repeats folded in the fold table generation that rested
// since the last tick, and failures lost since the last lost record.
func (s *Session) tick() error {
	// An error leaves the generation unharvested: the next tick tries it
	// again, and the stop record still counts every failure.
	folds, _ := s.tracer.HarvestFolds()
	folds = mergeRepeats(s.heldFolds, folds)
	s.heldFolds = nil
	if err := s.writeRepeats(folds, time.Time{}); err != nil {
		return err
	}
	return s.writeLost()
}

// flushFolds reports every failure folded so far on the port of a
// recovery, so that its attempts count them: it harvests the resting
// generation of the fold table, flips, and harvests the other
// (HarvestFolds waits until the programs have certainly moved on). Those
// repeats records carry the time of the recovery (their failures came
// before it, and are written before it). The folds of other ports are
// held for the next tick: stamped with this recovery's time, which may
// be before they happened, they would say their failures were counted
// before they were made.
func (s *Session) flushFolds(r *events.Recovered) error {
	all := s.heldFolds
	for range 2 {
		folds, _ := s.tracer.HarvestFolds()
		all = mergeRepeats(all, folds)
	}
	var port []events.Repeats
	s.heldFolds = nil
	for _, f := range all {
		if f.Proto == r.Proto && f.Port == r.Port {
			port = append(port, f)
		} else {
			s.heldFolds = append(s.heldFolds, f)
		}
	}
	return s.writeRepeats(port, r.Time)
}

// mergeRepeats adds folds to into, summing those that make the same
// record (and covering their spans): one process's failures are one
// repeats record per harvest, not one per fold table generation.
func mergeRepeats(into, folds []events.Repeats) []events.Repeats {
	type key struct {
		pid                         int
		comm, syscall, errno, proto string
		port                        uint16
	}
	at := make(map[key]int, len(into))
	for i, r := range into {
		at[key{r.PID, r.Comm, r.Syscall, r.Errno, r.Proto, r.Port}] = i
	}
	for _, r := range folds {
		k := key{r.PID, r.Comm, r.Syscall, r.Errno, r.Proto, r.Port}
		if i, ok := at[k]; ok {
			tracer.MergeSpan(&into[i], &r)
			continue
		}
		at[k] = len(into)
		into = append(into, r)
	}
	return into
}

// writeRepeats writes folds, stamped at (or now, if at is zero or later).
func (s *Session) writeRepeats(folds []events.Repeats, at time.Time) error {
	now := time.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	for i := range folds {
		r := &folds[i]
		if s.opts.Unit != "" && !s.inUnit[r.PID] {
			// A pid whose reported failure was not in the unit, or one
			// forgotten since: left out, as its failures are.
			s.otherUnits += r.Count
			continue
		}
		r.Time, r.Host = at, s.host
		s.folded += r.Count
		if err := s.write(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) writeLost() error {
	st, err := s.tracer.Stats()
	if err != nil {
		return err
	}
	_, pumpLost := s.incidents.PumpCounts()
	incidentLost := st.IncidentLost + pumpLost
	if st.Lost > s.lost || incidentLost > s.incidentLost {
		lost := &events.Lost{Header: events.Header{Type: events.TypeLost, Version: events.Version, Time: time.Now(), Host: s.host},
			Count: st.Lost - s.lost, IncidentRecords: incidentLost - s.incidentLost}
		s.lost, s.incidentLost = st.Lost, incidentLost
		return s.write(lost)
	}
	return nil
}

// stop detaches the programs, so the counts stop moving, then reports the
// failures still queued in the ring buffer for at most StopWithin (or
// until Hurry), the folds of both fold table generations and what was
// lost, and writes the stop record. Every count in it is measured on its
// own: failures by the kernel, reported and folded by what was written,
// lost by the kernel, unread from what is left in the ring buffer — so
// failures = reported + folded + lost + unread checks them all.
func (s *Session) stop() error {
	s.tracer.Detach()
	var deadline <-chan time.Time
	if s.opts.StopWithin > 0 {
		deadline = time.After(s.opts.StopWithin)
		if queued := s.tracer.Unread(); queued > 0 && s.opts.Stopping != nil {
			s.opts.Stopping(queued)
		}
	}
drain:
	for {
		select {
		case <-deadline:
			break drain
		case <-s.opts.Hurry:
			break drain
		default:
		}
		done, err := s.catchUp(16)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	// A fold table or counter that cannot be read leaves its counts out of
	// the stop record (which then does not add up), never the record itself.
	folds, harvestErr := s.tracer.HarvestAllFolds()
	folds = mergeRepeats(s.heldFolds, folds)
	s.heldFolds = nil
	if err := s.writeRepeats(folds, time.Time{}); err != nil {
		return err
	}
	// The programs are detached: what they reported is in the ring.
	if err := s.incidents.Drain(func(*events.Recovered) error { return nil }); err != nil {
		return err
	}
	signalsFolded, incidentLost := s.incidents.PumpCounts()
	lostErr := s.writeLost()
	st, statsErr := s.tracer.Stats()
	unread := s.tracer.Unread()
	if s.pending != nil { // read, but the stop's time was up
		unread++
	}
	now := time.Now()
	err := s.write(&events.Stop{
		Header:   events.Header{Type: events.TypeStop, Version: events.Version, Time: now, Host: s.host},
		Failures: st.Failures, Reported: s.reported, Folded: s.folded, Lost: s.lost,
		Unread: unread, OtherUnits: s.otherUnits, Unfolded: st.FoldFull, Unresolved: s.unresolved, Unfollowed: st.Unfollowed,
		IncidentsUntracked: s.incidents.Untracked(), SignalsFolded: signalsFolded, IncidentRecordsLost: incidentLost + st.IncidentLost,
		DurationMS: now.Sub(s.started).Milliseconds(),
	})
	return errors.Join(err, harvestErr, lostErr, statsErr)
}

// maxUnitPIDs bounds Session.inUnit.
const maxUnitPIDs = 16384

// UnitMatches tells whether p runs in unit: "NAME" is a unit of the
// system's manager, "user@UID.service/NAME" one of a user's (a user names
// its own units: its "nginx.service" is not the system's).
func UnitMatches(unit string, p *events.Process) bool {
	manager, name, ok := strings.Cut(unit, "/")
	if !ok {
		manager, name = "", unit
	}
	return p.Unit == name && p.UnitManager == manager
}

func (s *Session) close() {
	s.tracer.Close()
	s.enrich.close()
	s.shared.close()
	s.ready.remove()
}

// filters are the tracer's filters as the start record says them.
func filters(c *tracer.Config) events.Filters {
	f := events.Filters{PIDs: c.PIDs, FollowChildren: c.FollowChildren && len(c.PIDs) > 0, Comm: c.Comm, Netns: c.Netns}
	for _, r := range c.Ports {
		if r.Lo == r.Hi {
			f.Ports = append(f.Ports, strconv.Itoa(int(r.Lo)))
		} else {
			f.Ports = append(f.Ports, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
		}
	}
	for _, e := range c.Errnos {
		f.Errnos = append(f.Errnos, events.ErrnoName(e))
	}
	return f
}
