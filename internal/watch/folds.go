package watch

import (
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// foldBook turns the kernel's per-key folded counts (monotonic, see
// fold_emit in bpf/bindwatch.bpf.c) into repeats records. For each key it
// remembers how many folded failures the output already reports, and who
// the key is about (taken from the key's last reported failure).
//
// It follows the kernel's map, which is LRU-bounded: a key the kernel has
// evicted is forgotten here too (prune), and a key recreated since starts
// again from zero. Folds of a key whose every event was lost have no one to
// name; the stop record still counts them.
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

// seen accounts for the failure f decoded from ev, and returns the repeats
// folded before it that are not reported yet, if any.
func (b foldBook) seen(ev *tracer.BindwatchEvent, f *events.Failure) *events.Repeats {
	k := keyOf(ev)
	e := b[k]
	if e == nil {
		e = &foldEntry{}
		b[k] = e
	}
	e.comm, e.proto = f.Process.Comm, f.Proto
	return e.report(k, ev.Folded, f.Time)
}

// pending returns a repeats record for every key that folded failures not
// reported yet, and forgets the keys the kernel no longer has.
func (b foldBook) pending(folded map[tracer.BindwatchFoldKey]uint64, now time.Time) []*events.Repeats {
	var out []*events.Repeats
	for k, e := range b {
		n, ok := folded[k]
		if !ok {
			delete(b, k) // evicted by the kernel's LRU
			continue
		}
		if r := e.report(k, n, now); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// report moves the key's reported count up to folded, returning a repeats
// record for the difference.
func (e *foldEntry) report(k tracer.BindwatchFoldKey, folded uint64, at time.Time) *events.Repeats {
	if folded < e.reported {
		e.reported = 0 // the kernel evicted the key and made it anew
	}
	if folded == e.reported {
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
