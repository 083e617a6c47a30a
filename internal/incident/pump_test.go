package incident

import (
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The pump's rates, without a kernel: a flood of one sender's signals is
// folded past events.SignalBurst into one signal_repeats record, a second
// sender's first signal is still recorded, and other records are never
// folded.
func TestPumpFoldsSignalFlood(t *testing.T) {
	p := newPump(nil)
	now := time.Now()
	p.window = now // a window that has just begun: no flush before the end
	sig := func(sender int, at time.Time) *events.Signal {
		return &events.Signal{
			Header: events.Header{Type: events.TypeSignal, Version: events.Version, Time: at},
			Signal: "SIGTERM", Sender: events.Process{PID: sender}, Target: events.Process{PID: 1},
			Result: "delivered", Proto: "tcp", Port: 8080,
		}
	}
	const flood = 100
	for i := range flood {
		p.accept(sig(10, now.Add(time.Duration(i)*time.Microsecond)), now)
	}
	p.accept(sig(11, now.Add(time.Millisecond)), now)
	p.accept(&events.Released{Header: events.Header{Type: events.TypeReleased, Version: events.Version, Time: now}, Proto: "tcp", Port: 8080}, now)

	queued, err := p.take()
	if err != nil {
		t.Fatal(err)
	}
	var signals, released int
	for _, rec := range queued {
		switch r := rec.(type) {
		case *events.Signal:
			signals++
		case *events.Released:
			released++
		case *events.SignalRepeats:
			t.Fatalf("folds flushed before the window ended: %+v", r)
		}
	}
	if want := events.SignalBurst + 1; signals != want || released != 1 {
		t.Fatalf("queued %d signals, %d released; want %d (the flood's first %d, the other sender's first) and 1", signals, released, want, events.SignalBurst)
	}
	folded, lost := p.counts()
	if folded != flood-events.SignalBurst || lost != 0 {
		t.Fatalf("counts: folded %d, lost %d; want %d, 0", folded, lost, flood-events.SignalBurst)
	}

	// The window over, the fold is queued: one record for the sender.
	p.mu.Lock()
	p.flush(now.Add(signalWindow), false)
	p.mu.Unlock()
	queued, _ = p.take()
	if len(queued) != 1 {
		t.Fatalf("after the window: %d records, want one signal_repeats", len(queued))
	}
	r, ok := queued[0].(*events.SignalRepeats)
	if !ok || r.Sender.PID != 10 || r.Count != flood-events.SignalBurst || r.Port != 8080 {
		t.Fatalf("fold = %#v; want sender 10, count %d, port 8080", queued[0], flood-events.SignalBurst)
	}
	if !r.First.Equal(now.Add(events.SignalBurst*time.Microsecond)) || !r.Last.Equal(now.Add((flood-1)*time.Microsecond)) {
		t.Fatalf("fold spans %v..%v; want the folded signals' first and last", r.First, r.Last)
	}
}
