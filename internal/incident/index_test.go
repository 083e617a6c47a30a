package incident

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

func signal(at time.Time, sig string, from events.Process, to int) *events.Signal {
	return &events.Signal{Header: events.Header{Type: events.TypeSignal, Version: 1, Time: at, Host: "h"}, Signal: sig, Sender: from,
		Target: events.Process{PID: to, Comm: "holder"}, Result: "delivered", Proto: "tcp", Netns: 1, Port: 80}
}

// A user's SIGHUP flood from many processes is one kind of signal: its
// first is listed, the rest folded into one counted entry; root's SIGTERM
// to another holder in the middle of it stays a line of its own; kinds
// beyond the cap are counted.
func TestBuilderFoldsSignals(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	b.Add(failure(t0, 80, 7))
	const flood = 5000
	for i := range flood {
		at := t0.Add(time.Duration(i+1) * time.Millisecond)
		b.Add(signal(at, "SIGHUP", events.Process{PID: 1000 + i%300, UID: 65534, Comm: "flood"}, 40))
		if i == flood/2 {
			b.Add(signal(at, "SIGTERM", events.Process{PID: 2, UID: 0, Comm: "deploy"}, 41))
		}
	}
	// Other kinds, beyond the cap: a program name each.
	for i := range MaxSignalKinds + 5 {
		b.Add(signal(t0.Add(10*time.Second), "SIGHUP", events.Process{PID: 3, UID: 65534, Comm: "p" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)}, 40))
	}
	in := b.Finish(t0.Add(time.Minute))[0]
	var listed []string
	var folded []events.TimelineEntry
	for _, e := range in.Timeline {
		if e.Kind != events.MarkSignal {
			continue
		}
		if e.Count > 0 {
			folded = append(folded, e)
		} else {
			listed = append(listed, e.Text)
		}
	}
	if len(in.Signals) != MaxSignalKinds || len(listed) != MaxSignalKinds {
		t.Errorf("%d signals listed, %d listed entries; want the cap, %d", len(in.Signals), len(listed), MaxSignalKinds)
	}
	if !strings.HasPrefix(listed[0], "SIGHUP to pid 40") || !strings.HasPrefix(listed[1], "SIGTERM to pid 41 (holder) from pid 2 (deploy) uid 0") {
		t.Errorf("first listed: %q, %q; want the flood's first SIGHUP, then root's SIGTERM", listed[0], listed[1])
	}
	if len(folded) != 1 || folded[0].Count != flood-1 ||
		!strings.Contains(folded[0].Text, "4999 more SIGHUP to pid 40 (holder) from flood uid 65534 (more than 64 processes)") ||
		!strings.Contains(folded[0].Text, "the last at +5.000s") {
		t.Errorf("folded entries %+v, want one counting the flood's %d others", folded, flood-1)
	}
	// 2 kinds (the flood, root's) + 98 from the loop fill the cap: 7 beyond it.
	if in.SignalsFolded != flood-1+7 || in.TimelineOmitted != 7 {
		t.Errorf("signals_folded %d, timeline_omitted %d; want %d and 7", in.SignalsFolded, in.TimelineOmitted, flood-1+7)
	}
	if o := OmittedLine(in); !strings.Contains(o, "7 more entries not listed") {
		t.Errorf("omitted line %q", o)
	}
}

// A holder named again by every failure — with and without its socket's
// inode — is one holder; another socket of the same processes is another.
func TestBuilderHolderIndex(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	b := NewBuilder()
	procs := []events.Process{{PID: 7}, {PID: 8}}
	for i, inode := range []uint64{5, 0, 5, 6, 0} {
		f := failure(t0.Add(time.Duration(i)*time.Millisecond), 80, 100+i)
		f.Holders = []events.Holder{{State: "LISTEN", Addr: "0.0.0.0", Port: 80, Inode: inode, Processes: procs}}
		b.Add(f)
	}
	f := failure(t0.Add(time.Second), 80, 100)
	f.Holders = []events.Holder{{State: "LISTEN", Addr: "0.0.0.0", Port: 80, Inode: 5, Processes: procs[:1]}}
	b.Add(f)
	in := b.Finish(t0.Add(time.Minute))[0]
	var got []string
	for _, h := range in.Holders {
		got = append(got, h.Addr+" "+string(rune('0'+h.Inode))+" "+string(rune('0'+len(h.Processes))))
	}
	if strings.Join(got, ",") != "0.0.0.0 5 2,0.0.0.0 6 2,0.0.0.0 5 1" || len(in.Failing) != 5 {
		t.Errorf("holders %v, failing %d; want inode 5 and 6 of pids 7 and 8, inode 5 of pid 7; 5 failing", got, len(in.Failing))
	}
}
