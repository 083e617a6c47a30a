package sink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// lossBook is one output's account of what it could not write: counted
// per record and per failure carried, said in-band by the next write that
// gets through (an output_lost record) and in the stop record, and on
// standard error once per outage. It is not safe for concurrent use: the
// output holds its lock.
type lossBook struct {
	output string    // "file", "stdout", "stderr", "syslog"
	name   string    // how messages name it: "--output /var/log/x.jsonl"
	warn   io.Writer // standard error
	host   string

	errors            uint64 // failed writes
	records, failures uint64 // could not be written, whole session
	unsaidRecords     uint64 // … and not yet said in-band
	unsaidFailures    uint64
	lastErr           error
	outage            bool // failing since the last write that got through
	// said: the current outage was said on standard error; saidAt: when
	// an outage last was. A disk that is nearly full lets a small record
	// through now and then: one minute of such flapping is one message.
	said   bool
	saidAt time.Time
}

func newLossBook(output, name string, warn io.Writer) lossBook {
	host, _ := os.Hostname()
	if warn == nil {
		warn = io.Discard
	}
	return lossBook{output: output, name: name, warn: warn, host: host}
}

// failed counts one failed write, of rec if it is now given up.
func (l *lossBook) failed(rec events.Record, err error, givenUp bool) {
	l.failedCarrying(failuresIn(rec), err, givenUp)
}

// failedCarrying is failed for a record that carried failures failures
// (kept in place of the record itself, which a queue need not hold).
func (l *lossBook) failedCarrying(failures uint64, err error, givenUp bool) {
	l.errors++
	l.lastErr = err
	l.outage = true
	if !l.said && (l.saidAt.IsZero() || time.Since(l.saidAt) > time.Minute) {
		l.said, l.saidAt = true, time.Now()
		fmt.Fprintf(l.warn, "bindwatch: writing to %s failed: %s; tracing goes on, and records that cannot be written are counted and reported there (an output_lost record) once writing works again (hint: %s)\n",
			l.name, errText(err), errHint(err))
	}
	if givenUp {
		l.records++
		l.failures += failures
		l.unsaidRecords++
		l.unsaidFailures += failures
	}
}

// notice is the output_lost record to write before the next record, or
// nil when nothing is unsaid.
func (l *lossBook) notice(now time.Time) *events.OutputLost {
	if l.unsaidRecords == 0 {
		return nil
	}
	return &events.OutputLost{
		Header: events.Header{Type: events.TypeOutputLost, Version: events.Version, Time: now, Host: l.host},
		Output: l.output, Records: l.unsaidRecords, Failures: l.unsaidFailures, Error: errText(l.lastErr),
	}
}

// wrote records a write that got through, with the notice n before it
// if one was written (what it said is said; more may have been lost
// since it was made).
func (l *lossBook) wrote(n *events.OutputLost) {
	if n != nil {
		l.unsaidRecords -= n.Records
		l.unsaidFailures -= n.Failures
	}
	if l.outage {
		l.outage = false
		if !l.said {
			return
		}
		l.said = false
		if l.records > 0 {
			fmt.Fprintf(l.warn, "bindwatch: writing to %s works again; %d record%s (%d failure%s) could not be written so far this session, as output_lost records there say\n",
				l.name, l.records, events.Plural(l.records), l.failures, events.Plural(l.failures))
		} else {
			fmt.Fprintf(l.warn, "bindwatch: writing to %s works again, nothing was lost\n", l.name)
		}
	}
}

// stamp fills this output's counts into a stop record (a copy: every
// output says its own).
func (l *lossBook) stamp(rec events.Record) events.Record {
	st, ok := rec.(*events.Stop)
	if !ok {
		return rec
	}
	c := *st
	c.OutputLost, c.OutputLostFailures = l.records, l.failures
	return &c
}

func (l *lossBook) stats() Stats {
	return Stats{Output: l.output, Errors: l.errors, Dropped: l.records}
}

// failuresIn is how many failed bind()/listen() calls a record stands for.
func failuresIn(rec events.Record) uint64 {
	n, _ := carried(rec)
	return n
}

// carried is failuresIn; known is false for a record type it does not
// know, which TestFormsKnowEveryRecord catches.
func carried(rec events.Record) (failures uint64, known bool) {
	switch r := rec.(type) {
	case *events.Failure:
		return 1, true
	case *events.Repeats:
		return r.Count, true
	case *events.Lost:
		return r.Count, true
	case *events.Start, *events.Stop, *events.OutputLost, *events.Released, *events.Signal, *events.SignalRepeats,
		*events.Recovered, *events.PortFree, *events.PortShared, *events.Abandoned, *events.IncidentUntracked,
		*events.Incident, *events.Spread, *events.Who, *events.Doctor, *events.FreeRecord, *events.HeldRecord, *events.WaitFreeRecord:
		return 0, true
	}
	return 0, false
}

// errText is the heart of a write error: "no space left on device".
func errText(err error) string {
	if err == nil {
		return ""
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func errHint(err error) string {
	switch {
	case errors.Is(err, errBufferFull):
		return "the collector is away or does not read; it gets an output_lost record with the count once it reads again"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "free space there: writing resumes by itself"
	case errors.Is(err, syscall.EPIPE):
		return "the reader of this output has gone; stop bindwatch with SIGTERM, or give --output a file"
	case errors.Is(err, syscall.EFBIG):
		return "the file reached the largest size allowed; rotate it (logrotate, or --output-max-size)"
	}
	return "check the device and the system log; writing is retried with every record"
}
