package watch

import (
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// foldBook turns the kernel's per-key folded counts (monotonic, see
// fold_emit in bpf/bindwatch.bpf.c) into repeats records. For each key it
// remembers how many folded failures the output already reports.
type foldBook map[tracer.BindwatchFoldKey]*foldEntry

type foldEntry struct {
	reported uint64 // folded failures of this key already in repeats records
	comm     string
	proto    string
}

// keyOf is the fold key the kernel used for ev; sockHint is what the
// backend put in it (see struct fold_key in bpf/bindwatch.h).
func keyOf(ev *tracer.BindwatchEvent) tracer.BindwatchFoldKey {
	return tracer.BindwatchFoldKey{Tgid: ev.Pid, Err: ev.Err, Port: ev.Port, Syscall: ev.Syscall, SockHint: ev.SockHint}
}

// seen accounts for an event read from the ring buffer and returns the
// repeats folded before it that are not reported yet, if any.
func (b foldBook) seen(ev *tracer.BindwatchEvent, at time.Time) *events.Repeats {
	k := keyOf(ev)
	e := b[k]
	if e == nil {
		e = &foldEntry{}
		b[k] = e
	}
	e.comm = eventComm(ev)
	e.proto = events.ProtoName(ev.Protocol)
	return e.report(k, ev.Folded, at)
}

// pending returns a repeats record for every key that folded failures
// not reported yet.
func (b foldBook) pending(folded map[tracer.BindwatchFoldKey]uint64, now time.Time) []*events.Repeats {
	var out []*events.Repeats
	for k, n := range folded {
		if e := b[k]; e != nil {
			if r := e.report(k, n, now); r != nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// report moves the key's reported count up to folded, returning a repeats
// record for the difference.
func (e *foldEntry) report(k tracer.BindwatchFoldKey, folded uint64, at time.Time) *events.Repeats {
	if folded <= e.reported {
		return nil
	}
	r := &events.Repeats{
		Type: events.TypeRepeats, Version: events.Version, Time: at, Count: folded - e.reported,
		PID: int(k.Tgid), Comm: e.comm, Syscall: events.SyscallName(k.Syscall),
		Errno: events.ErrnoName(syscall.Errno(k.Err)), Proto: e.proto, Port: k.Port,
	}
	e.reported = folded
	return r
}

func eventComm(ev *tracer.BindwatchEvent) string {
	b := make([]byte, 0, len(ev.Comm))
	for _, c := range ev.Comm {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
