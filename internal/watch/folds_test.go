package watch

import (
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// The fold book reports each folded failure once, follows the kernel's LRU
// map (forgets evicted keys, restarts a recreated one from zero), and does
// not grow past it.
func TestFoldBook(t *testing.T) {
	b := foldBook{}
	k := tracer.FoldKey{PID: 42, Errno: syscall.EADDRINUSE, Port: 8080, Syscall: "bind"}
	rec := &tracer.Record{Fold: k, Failure: events.Failure{Proto: "tcp", Process: events.Process{Comm: "nginx"}}}
	now := time.Now()

	if r := b.seen(rec); r != nil {
		t.Fatalf("first event reported repeats %+v", r)
	}
	rs := b.pending(map[tracer.FoldKey]uint64{k: 5}, now)
	if len(rs) != 1 || rs[0].Count != 5 || rs[0].Comm != "nginx" || rs[0].Proto != "tcp" || rs[0].PID != 42 {
		t.Fatalf("pending = %+v, want one repeats of 5 by nginx", rs)
	}
	rec.Folded = 7 // the next event: two more folded before it
	if r := b.seen(rec); r == nil || r.Count != 2 {
		t.Fatalf("seen after 7 folded = %+v, want 2 more", r)
	}
	if rs := b.pending(map[tracer.FoldKey]uint64{k: 7}, now); len(rs) != 0 {
		t.Fatalf("nothing new, yet pending = %+v", rs)
	}
	// Evicted and recreated by the kernel: its count starts over.
	if rs := b.pending(map[tracer.FoldKey]uint64{k: 3}, now); len(rs) != 1 || rs[0].Count != 3 {
		t.Fatalf("recreated key: pending = %+v, want 3", rs)
	}
	// Gone from the kernel: forgotten here.
	b.pending(map[tracer.FoldKey]uint64{}, now)
	if len(b) != 0 {
		t.Fatalf("fold book kept %d keys the kernel evicted", len(b))
	}
}
