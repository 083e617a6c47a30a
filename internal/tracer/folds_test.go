package tracer

import (
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// fillResting fills the fold table generation HarvestFolds reads next with
// n entries, as a storm of n distinct keys would.
func fillResting(t testing.TB, tr *Tracer, n int) {
	t.Helper()
	m := tr.foldMap(tr.foldGen + 1)
	for i := range n {
		k := bindwatchFoldKey{Tgid: uint32(1 + i/1000), Err: 98, Port: uint16(i % 1000), Syscall: 1, SockHint: 3}
		v := bindwatchFoldVal{Folded: uint64(i + 1), Protocol: 6}
		if err := m.Put(&k, &v); err != nil {
			t.Fatalf("fill fold table entry %d: %v", i, err)
		}
	}
}

// A full fold table generation is harvested whole, exactly once, and
// emptied; the flip leaves the programs writing the emptied generation.
func TestHarvestFullFoldTable(t *testing.T) {
	testenv.RequireRoot(t)
	tr, err := Open(Config{Backend: testenv.Backend(), Fold: time.Second, Ports: []PortRange{{Lo: 1, Hi: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	n := tr.FoldEntries()
	fillResting(t, tr, n)
	before := tr.foldGen
	folds, err := tr.HarvestFolds()
	if err != nil {
		t.Fatalf("harvest a full fold table: %v", err)
	}
	var sum, want uint64
	for _, f := range folds {
		sum += f.Count
	}
	for i := range n {
		want += uint64(i + 1)
	}
	if len(folds) != n || sum != want {
		t.Errorf("harvested %d folds counting %d, want %d counting %d", len(folds), sum, n, want)
	}
	if tr.foldGen == before {
		t.Error("fold table not flipped")
	}
	if again, _ := tr.HarvestAllFolds(); len(again) != 0 {
		t.Errorf("%d folds harvested twice", len(again))
	}
}

// BenchmarkHarvestFolds is the cost of reading and emptying one full
// generation of the fold table (the measurement behind its size).
func BenchmarkHarvestFolds(b *testing.B) {
	testenv.RequireRoot(b)
	tr, err := Open(Config{Backend: testenv.Backend(), Fold: time.Second, Ports: []PortRange{{Lo: 1, Hi: 1}}})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	for b.Loop() {
		b.StopTimer()
		fillResting(b, tr, tr.FoldEntries())
		b.StartTimer()
		if _, err := tr.HarvestFolds(); err != nil {
			b.Fatal(err)
		}
		tr.HarvestFolds() // flip back: the next fill targets the same generation
	}
}

// Folds of one process on one port from many sockets are one record.
func TestMergeRepeats(t *testing.T) {
	r := func(pid int, port uint16, n uint64) events.Repeats {
		return events.Repeats{PID: pid, Comm: "storm", Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: port, Count: n}
	}
	got := mergeRepeats([]events.Repeats{r(1, 80, 2), r(1, 81, 1), r(1, 80, 3), r(2, 80, 1), r(1, 81, 4)})
	want := []events.Repeats{r(1, 80, 5), r(1, 81, 5), r(2, 80, 1)}
	if len(got) != len(want) {
		t.Fatalf("merged into %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// A merged record's span covers the spans of the folds it sums.
func TestMergeRepeatsSpans(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }
	r := func(first, last int) events.Repeats {
		return events.Repeats{PID: 1, Comm: "c", Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: 80, Count: 1, First: at(first), Last: at(last)}
	}
	got := mergeRepeats([]events.Repeats{r(200, 300), r(100, 250), r(150, 400)})
	if len(got) != 1 || got[0].Count != 3 || !got[0].First.Equal(at(100)) || !got[0].Last.Equal(at(400)) {
		t.Errorf("merged %+v, want one record of 3 from +100ms to +400ms", got)
	}
	s := foldSpan{from: at(0), to: at(1000), fold: 300 * time.Millisecond}
	if first, last := s.bounds(at(500)); !first.Equal(at(0)) || !last.Equal(at(800)) {
		t.Errorf("bounds after a report at +500ms: %v → %v, want +0 → +800ms (the fold window after it)", first, last)
	}
	if first, last := s.bounds(at(900)); !first.Equal(at(0)) || !last.Equal(at(1000)) {
		t.Errorf("bounds after a report at +900ms: %v → %v, want +0 → +1000ms (the generation's end)", first, last)
	}
}
