package tracer

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// FoldEntries is how many keys each generation of the fold table holds
// (BW_FOLD_ENTRIES in bpf/bindwatch/folds.h).
func (t *Tracer) FoldEntries() int { return int(t.maps.Folds0.MaxEntries()) }

// HarvestFolds empties the fold table generation the programs stopped
// writing at the previous call and returns its folds as repeats records
// (without time and host); then it flips, so the programs write the
// emptied generation while the one they wrote until now rests until the
// next call. The generation it reads must be one no program can still be
// writing (one that read fold_gen before the previous flip must be done),
// so the read cannot be disturbed and no increment is lost: a program
// runs for microseconds, so one that rested restedEnough has; one flipped
// away from more recently is waited for (WaitForPrograms, ~15 ms).
//
// On an error nothing is flipped: the next call harvests the same
// generation again, and what it already read is not returned twice (it
// was deleted as it was read).
func (t *Tracer) HarvestFolds() ([]events.Repeats, error) {
	if time.Since(t.flipped) < restedEnough {
		WaitForPrograms()
	}
	rest := t.foldGen + 1
	folds, err := harvest(t.foldMap(rest), t.restingSpan(), nil)
	folds = mergeRepeats(folds)
	if err != nil {
		return folds, err
	}
	from := time.Now() // the programs write rest from the Set on
	if err := t.coll.Variables[bindwatchVarFoldGen].Set(rest); err != nil {
		return folds, fmt.Errorf("flip the fold table: %w", err)
	}
	t.foldGen, t.flipped = rest, time.Now()
	t.genFrom[rest&1] = from
	return folds, nil
}

// HarvestAllFolds empties both generations of the fold table. Call it
// after Detach, when no program writes either.
func (t *Tracer) HarvestAllFolds() ([]events.Repeats, error) {
	folds, err := harvest(t.foldMap(t.foldGen+1), t.restingSpan(), nil)
	if err == nil {
		folds, err = harvest(t.foldMap(t.foldGen), foldSpan{from: t.genFrom[t.foldGen&1], to: time.Now(), fold: t.fold}, folds)
	}
	return mergeRepeats(folds), err
}

// foldSpan is when the failures of a fold table generation were counted:
// from when the programs began writing it until they stopped (a flip, or
// the harvest of a generation still written), and no later than the fold
// window after a key's last reported failure (fold_val.last_emit_ns).
type foldSpan struct {
	from, to time.Time
	fold     time.Duration
}

// restingSpan is the span of the generation the programs stopped writing
// at the last flip. Before any flip it was never written; what a test
// put there is stamped with now.
func (t *Tracer) restingSpan() foldSpan {
	rest := t.foldGen + 1
	if t.flipped.IsZero() {
		now := time.Now()
		return foldSpan{from: now, to: now, fold: t.fold}
	}
	return foldSpan{from: t.genFrom[rest&1], to: t.flipped, fold: t.fold}
}

// bounds are the first and last moments a fold of this span, whose key
// last reported a failure at lastEmit, can have been counted.
func (s foldSpan) bounds(lastEmit time.Time) (first, last time.Time) {
	first, last = s.from, s.to
	if s.fold > 0 && !lastEmit.IsZero() {
		if end := lastEmit.Add(s.fold); end.Before(last) {
			last = end
		}
	}
	if last.Before(first) { // the boot and wall clocks disagree by a hair
		last = first
	}
	return first, last
}

// repeatsKey is what a repeats record says a failure was: the kernel's
// fold key also tells a process's sockets apart (sock_hint), the record
// does not.
type repeatsKey struct {
	pid                         int
	comm, syscall, errno, proto string
	port                        uint16
}

// mergeRepeats sums the folds that make the same repeats record, so that
// one process failing on one port from 600 sockets is one record a tick,
// not 600 — however many keys a storm spreads itself over. The record's
// span covers theirs.
func mergeRepeats(folds []events.Repeats) []events.Repeats {
	at := make(map[repeatsKey]int, len(folds))
	out := folds[:0]
	for _, r := range folds {
		k := repeatsKey{r.PID, r.Comm, r.Syscall, r.Errno, r.Proto, r.Port}
		if i, ok := at[k]; ok {
			MergeSpan(&out[i], &r)
			continue
		}
		at[k] = len(out)
		out = append(out, r)
	}
	return out
}

func (t *Tracer) foldMap(gen uint32) *ebpf.Map {
	if gen&1 == 1 {
		return t.maps.Folds1
	}
	return t.maps.Folds0
}

// restedEnough is how long after a flip no program is taken to be still
// writing the generation flipped away from: thousands of times the
// microseconds a program runs. Only one preempted mid-run for longer (a
// preemptible kernel under extreme load) could; a shorter rest is made
// certain with WaitForPrograms instead.
const restedEnough = 50 * time.Millisecond

// harvestBatch is how many entries one batch syscall moves.
const harvestBatch = 1024

// MergeSpan adds r's count to into, and widens into's span (first, last)
// to cover r's.
func MergeSpan(into, r *events.Repeats) {
	into.Count += r.Count
	if !r.First.IsZero() && (into.First.IsZero() || r.First.Before(into.First)) {
		into.First = r.First
	}
	if r.Last.After(into.Last) {
		into.Last = r.Last
	}
}

// harvest reads and deletes every entry of m, appending the folds that
// counted anything to out, within span.
func harvest(m *ebpf.Map, span foldSpan, out []events.Repeats) ([]events.Repeats, error) {
	keys := make([]bindwatchFoldKey, harvestBatch)
	vals := make([]bindwatchFoldVal, harvestBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := range n {
			out = appendFold(out, &keys[i], &vals[i], span)
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return harvestOneByOne(m, span, out)
		case err != nil:
			return out, fmt.Errorf("harvest fold table: %w", err)
		}
	}
}

// harvestOneByOne is harvest for kernels without batch operations (before
// 5.6): the map is not written while it is read, so walking it is safe.
func harvestOneByOne(m *ebpf.Map, span foldSpan, out []events.Repeats) ([]events.Repeats, error) {
	var keys []bindwatchFoldKey
	var k bindwatchFoldKey
	var v bindwatchFoldVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("walk fold table: %w", err)
	}
	for i := range keys {
		if err := m.Lookup(&keys[i], &v); err != nil {
			continue
		}
		if err := m.Delete(&keys[i]); err != nil {
			return out, fmt.Errorf("empty fold table: %w", err)
		}
		out = appendFold(out, &keys[i], &v, span)
	}
	return out, nil
}

// appendFold decodes one fold table entry into a repeats record (its time
// and host are the caller's), with the span its failures happened in.
// Each entry names its process itself (struct fold_val), so a fold is
// reported even when the failure that started it is still queued in the
// ring buffer, or was never delivered.
func appendFold(out []events.Repeats, k *bindwatchFoldKey, v *bindwatchFoldVal, span foldSpan) []events.Repeats {
	if v.Folded == 0 {
		return out
	}
	var lastEmit time.Time
	if v.LastEmitNs != 0 {
		lastEmit = host.BootTime(v.LastEmitNs)
	}
	first, last := span.bounds(lastEmit)
	return append(out, events.Repeats{
		Header: events.Header{Type: events.TypeRepeats, Version: events.Version}, Count: v.Folded,
		PID: int(k.Tgid), Comm: cString(v.Comm[:]), Syscall: syscallName(k.Syscall),
		Errno: events.ErrnoName(syscall.Errno(k.Err)), Proto: protoName(v.Protocol), Port: k.Port,
		First: first, Last: last,
	})
}
