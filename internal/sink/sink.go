// Package sink writes bindwatch's records where the operator wants them:
// a file (opened without following symlinks, reopened on SIGHUP, rotated
// by size), standard output, a syslog collector, Prometheus metrics. An
// output never stops tracing: what it cannot write it counts, retries
// where that makes sense, and says in-band (an output_lost record, and
// the stop record's output_lost counts) as soon as it can write again.
//
// How a record becomes bytes is a Form (text, JSON; another form such as
// ECS plugs in the same way); where the bytes go is an Output; a Set is
// what the pipeline writes to.
package sink

import (
	"errors"
	"fmt"
	"sync"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Form turns one record into its bytes, without a trailing newline; nil
// bytes (and no error) leave the record out of that output.
type Form func(rec events.Record) ([]byte, error)

// JSON is the form of --format json: one object per record (docs/schema.md).
func JSON(rec events.Record) ([]byte, error) { return events.MarshalJSON(rec) }

// Text is the form people read (events.Text): one line, plus indented
// why/fix lines for a diagnosed failure.
func Text(rec events.Record) ([]byte, error) { return []byte(events.Text(rec)), nil }

// LiveText is the text form of a tracer's output (events.LiveText):
// one why/fix per failing program, port and cause, short lines after it,
// and what opts leave out left out. Each call makes a new one, with its
// own memory of what it wrote; it must be used by one output only.
func LiveText(opts events.LiveOptions) Form {
	l := events.NewLiveText(opts)
	return func(rec events.Record) ([]byte, error) {
		s, ok := l.Text(rec)
		if !ok {
			return nil, nil
		}
		return []byte(s), nil
	}
}

// FormNamed is the form called name by --format.
func FormNamed(name string) (Form, error) {
	switch name {
	case events.FormatJSON:
		return JSON, nil
	case events.FormatText:
		return Text, nil
	case events.FormatECS:
		return ECS, nil
	}
	return nil, fmt.Errorf("unknown format %q (hint: text, json or ecs)", name)
}

// Output is one destination of records. Write fails only for a record
// that cannot be encoded; a destination that cannot take it (a full
// disk, a collector away) counts it instead, and tracing goes on.
type Output interface {
	Write(rec events.Record) error
	Close() error
}

// Stats is what an output could not do.
type Stats struct {
	// Output names it: "file", "stdout", "stderr", "syslog".
	Output string
	// Errors counts failed writes (a retried write counts each time).
	Errors uint64
	// Dropped counts records it could not write.
	Dropped uint64
}

// reporter is an output that keeps Stats.
type reporter interface{ Stats() Stats }

// reopener is an output that SIGHUP reopens.
type reopener interface{ Reopen() error }

// Set is the outputs of one session: the pipeline writes every record to
// the set, which hands it to each output in turn.
type Set struct {
	// mu guards outputs against Add while the metrics output reads Stats
	// from its HTTP server. Write does not take it: outputs are all added
	// before the first record.
	mu      sync.Mutex
	outputs []Output
}

// NewSet returns a set writing to outputs (nil ones are left out).
func NewSet(outputs ...Output) *Set {
	s := &Set{}
	for _, o := range outputs {
		if o != nil {
			s.Add(o)
		}
	}
	return s
}

// Add appends an output to the set.
func (s *Set) Add(o Output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outputs = append(s.outputs, o)
}

// Write hands rec to every output.
func (s *Set) Write(rec events.Record) error {
	var errs []error
	for _, o := range s.outputs {
		if err := o.Write(rec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reopen reopens every output that has something to reopen (the --output
// file, after logrotate moved or truncated it). A failure is reported by
// the output and leaves it writing where it was.
func (s *Set) Reopen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.outputs {
		if r, ok := o.(reopener); ok {
			r.Reopen()
		}
	}
}

// Stats is what each output that keeps counts could not do.
func (s *Set) Stats() []Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st []Stats
	for _, o := range s.outputs {
		if r, ok := o.(reporter); ok {
			st = append(st, r.Stats())
		}
	}
	return st
}

// Close closes every output.
func (s *Set) Close() error {
	s.mu.Lock()
	outputs := s.outputs // not held while closing: a scrape may read Stats
	s.mu.Unlock()
	var errs []error
	for _, o := range outputs {
		errs = append(errs, o.Close())
	}
	return errors.Join(errs...)
}
