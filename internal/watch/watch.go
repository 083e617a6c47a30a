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
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/redact"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"golang.org/x/sys/unix"
)

// Sink receives the session's records, one call each: *events.Start,
// *events.Failure, *events.Repeats, *events.Lost, *events.Stop. An
// *events.Writer is one; bindwatch run tallies them for its summary.
type Sink interface {
	Write(rec any) error
}

// Options configure a Session.
type Options struct {
	Tracer tracer.Config
	// Out receives the records.
	Out Sink
	// ReadyFile, if set, is created once tracing is live.
	ReadyFile string
	// Tick is how often folded repeats and lost counts are reported; 0
	// means the fold window, or one second.
	Tick time.Duration
	// Redact removes secrets from every process reported; nil is the
	// default rules.
	Redact *redact.Rules
	// Job is the command whose process tree is traced (bindwatch run:
	// Tracer.PIDs is bindwatch itself, with FollowChildren). A holder in
	// that tree is named as started by the same command.
	Job string
}

// Session is an attached tracer and the state of what it has reported.
type Session struct {
	opts    Options
	tracer  *tracer.Tracer
	enrich  *enricher
	host    string
	started time.Time

	reported uint64
	lost     uint64
	folds    foldBook
}

// Start attaches the tracer and writes the start record: from its return
// on, every failure is caught.
func Start(opts Options) (*Session, error) {
	t, err := tracer.Open(opts.Tracer)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	enrich, err := newEnricher(opts.Redact)
	if err != nil {
		t.Close()
		return nil, err
	}
	if opts.Job != "" && opts.Tracer.FollowChildren {
		self := os.Getpid()
		enrich.r.SetJob(&resolve.Job{Command: opts.Job, Contains: func(pid int) bool { return pid != self && t.Traced(pid) }})
	}
	s := &Session{opts: opts, tracer: t, enrich: enrich, host: host, started: time.Now(), folds: foldBook{}}
	if s.opts.Tick == 0 {
		s.opts.Tick = max(opts.Tracer.Fold, time.Second)
	}
	start := &events.Start{
		Type: events.TypeStart, Version: events.Version, Time: s.started, Host: host,
		Kernel: kernelRelease(), Backend: t.Backend(), Skipped: t.Skipped(),
		PID: os.Getpid(), FoldMS: opts.Tracer.Fold.Milliseconds(),
	}
	if len(start.Skipped) == 0 {
		start.Skipped = nil
	}
	if err := opts.Out.Write(start); err != nil {
		s.close()
		return nil, fmt.Errorf("write start record: %w", err)
	}
	if opts.ReadyFile != "" {
		if err := os.WriteFile(opts.ReadyFile, []byte(t.Backend()+"\n"), 0o644); err != nil {
			s.close()
			return nil, fmt.Errorf("write ready file %s: %w", opts.ReadyFile, err)
		}
	}
	return s, nil
}

// Tracer gives access to the attached tracer (to add pids to follow).
func (s *Session) Tracer() *tracer.Tracer { return s.tracer }

// Run reports failures until ctx is done, then drains what the kernel
// already handed over, writes the stop record and detaches.
func (s *Session) Run(ctx context.Context) error {
	defer s.close()
	var rec tracer.Record
	next := time.Now().Add(s.opts.Tick)
	for ctx.Err() == nil {
		s.tracer.SetDeadline(minTime(next, time.Now().Add(100*time.Millisecond)))
		err := s.tracer.Read(&rec)
		switch {
		case err == nil:
			if err := s.report(&rec); err != nil {
				return err
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if time.Now().After(next) {
			if err := s.tick(); err != nil {
				return err
			}
			next = time.Now().Add(s.opts.Tick)
		}
	}
	return s.stop()
}

// report writes one failure, after any repeats folded before it.
func (s *Session) report(rec *tracer.Record) error {
	f := new(events.Failure) // a sink may keep it; rec is read into again
	*f = rec.Failure
	f.Host = s.host
	if r := s.folds.seen(rec); r != nil {
		r.Host = s.host
		if err := s.opts.Out.Write(r); err != nil {
			return err
		}
	}
	s.enrich.failure(f)
	s.reported++
	return s.opts.Out.Write(f)
}

// tick reports repeats folded since their last report, and lost records.
func (s *Session) tick() error {
	folded, err := s.tracer.Folded()
	if err != nil {
		return err
	}
	for _, r := range s.folds.pending(folded, time.Now()) {
		r.Host = s.host
		if err := s.opts.Out.Write(r); err != nil {
			return err
		}
	}
	st, err := s.tracer.Stats()
	if err != nil {
		return err
	}
	if st.Lost > s.lost {
		lost := &events.Lost{Type: events.TypeLost, Version: events.Version, Time: time.Now(), Host: s.host, Count: st.Lost - s.lost}
		s.lost = st.Lost
		return s.opts.Out.Write(lost)
	}
	return nil
}

// stop drains the ring buffer, reports what is still pending and writes
// the stop record.
func (s *Session) stop() error {
	var rec tracer.Record
	for {
		s.tracer.SetDeadline(time.Now())
		if err := s.tracer.Read(&rec); err != nil {
			break
		}
		if err := s.report(&rec); err != nil {
			return err
		}
	}
	if err := s.tick(); err != nil {
		return err
	}
	st, err := s.tracer.Stats()
	if err != nil {
		return err
	}
	now := time.Now()
	return s.opts.Out.Write(&events.Stop{
		Type: events.TypeStop, Version: events.Version, Time: now, Host: s.host,
		Failures: s.reported + st.Folded + st.Lost, Reported: s.reported, Folded: st.Folded, Lost: st.Lost,
		DurationMS: now.Sub(s.started).Milliseconds(),
	})
}

func (s *Session) close() {
	s.tracer.Close()
	s.enrich.close()
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
