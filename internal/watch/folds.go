package watch

import (
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// foldBook turns the kernel's per-key failure counts (monotonic, see
// fold_emit in bpf/bindwatch.bpf.c) into repeats records. For each key it
// remembers how many failures the output already accounts for, as events
// or as repeats.
type foldBook map[tracer.BindwatchFoldKey]*foldEntry

type foldEntry struct {
	accounted uint64 // failures of this key already in the output
	lastEmit  uint64 // kernel timestamp of the last event read for the key
	comm      string
}

func keyOf(ev *tracer.BindwatchEvent) tracer.BindwatchFoldKey {
	return tracer.BindwatchFoldKey{Tgid: ev.Pid, Err: ev.Err, Port: ev.Port, Protocol: ev.Protocol, Syscall: ev.Syscall}
}

// seen accounts for an event read from the ring buffer and returns the
// repeats folded between the key's previous report and this event, if any.
func (b foldBook) seen(ev *tracer.BindwatchEvent, at time.Time) *events.Repeats {
	k := keyOf(ev)
	e := b[k]
	if e == nil {
		e = &foldEntry{}
		b[k] = e
	}
	e.comm = eventComm(ev)
	e.lastEmit = ev.TsNs
	var r *events.Repeats
	if ev.FoldCount > e.accounted+1 {
		r = repeatsOf(k, e, ev.FoldCount-1-e.accounted, at)
	}
	e.accounted = max(e.accounted, ev.FoldCount)
	return r
}

// pending returns a repeats record for every key with failures the output
// does not account for yet. A key whose latest event is still in the ring
// buffer (the kernel emitted after the last one read) is left alone: that
// event will carry the count. final, after the ring buffer was drained,
// reports every remainder.
func (b foldBook) pending(counts map[tracer.BindwatchFoldKey]tracer.FoldCount, now time.Time, final bool) []*events.Repeats {
	var out []*events.Repeats
	for k, c := range counts {
		e := b[k]
		if e == nil || c.Count <= e.accounted {
			continue
		}
		if !final && c.LastEmitNs > e.lastEmit {
			continue
		}
		out = append(out, repeatsOf(k, e, c.Count-e.accounted, now))
		e.accounted = c.Count
	}
	return out
}

func repeatsOf(k tracer.BindwatchFoldKey, e *foldEntry, n uint64, at time.Time) *events.Repeats {
	return &events.Repeats{
		Type: events.TypeRepeats, Version: events.Version, Time: at, Count: n,
		PID: int(k.Tgid), Comm: e.comm, Syscall: events.SyscallName(k.Syscall),
		Errno: events.ErrnoName(syscall.Errno(k.Err)), Proto: events.ProtoName(k.Protocol), Port: k.Port,
	}
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
