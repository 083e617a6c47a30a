package watch

import (
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
type foldBook map[tracer.FoldKey]*foldEntry

type foldEntry struct {
	reported uint64 // folded failures of this key already in repeats records
	comm     string
	proto    string
}

// seen accounts for the failure in rec, and returns the repeats folded
// before it that are not reported yet, if any.
func (b foldBook) seen(rec *tracer.Record) *events.Repeats {
	k, f := rec.Fold, &rec.Failure
	e := b[k]
	if e == nil {
		e = &foldEntry{}
		b[k] = e
	}
	e.comm, e.proto = f.Process.Comm, f.Proto
	return e.report(k, rec.Folded, f.Time)
}

// pending returns a repeats record for every key that folded failures not
// reported yet, and forgets the keys the kernel no longer has.
func (b foldBook) pending(folded map[tracer.FoldKey]uint64, now time.Time) []*events.Repeats {
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
func (e *foldEntry) report(k tracer.FoldKey, folded uint64, at time.Time) *events.Repeats {
	if folded < e.reported {
		e.reported = 0 // the kernel evicted the key and made it anew
	}
	if folded == e.reported {
		return nil
	}
	r := &events.Repeats{
		Type: events.TypeRepeats, Version: events.Version, Time: at, Count: folded - e.reported,
		PID: k.PID, Comm: e.comm, Syscall: k.Syscall,
		Errno: events.ErrnoName(k.Errno), Proto: e.proto, Port: k.Port,
	}
	e.reported = folded
	return r
}
