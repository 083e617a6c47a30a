package watch

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// The stop record's failures = reported + folded + lost + unread must
// equal the number of failures really made — with folding and a full ring
// buffer at once, where the two could double-count or miss each other —
// and each term must match the records written: bind_failure lines,
// repeats counts, lost counts. The failures are this process's
// EADDRNOTAVAIL binds on a block of ports (no port is held), filtered to
// this pid so nothing else on the host adds to them; a one-page ring
// buffer has room for the first failures of a few ports only, so most
// keys' first failures are folded as undelivered, and every later one is
// folded in the window.
func TestAccountingFoldedAndLost(t *testing.T) {
	const ports, rounds = 64, 100
	lo := min(testenv.FreePort(t), 65535-ports)
	cfg := tracer.Config{
		PIDs:     []uint32{uint32(os.Getpid())},
		Ports:    []tracer.PortRange{{Lo: uint16(lo), Hi: uint16(lo + ports - 1)}},
		Fold:     time.Hour,
		RingSize: os.Getpagesize(),
	}
	s := attachSession(t, cfg) // not reading yet: the ring buffer fills
	made := 0
	for r := 0; r < rounds; r++ {
		for p := lo; p < lo+ports; p++ {
			fd, err := testenv.Socket("udp", "203.0.113.9", testenv.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			if err := testenv.Bind(fd, "203.0.113.9", p); err != syscall.EADDRNOTAVAIL {
				t.Fatalf("bind 203.0.113.9:%d = %v, want EADDRNOTAVAIL", p, err)
			}
			syscall.Close(fd)
			made++
		}
	}
	s.run()
	var failures, repeats, lost float64
	var stop map[string]any
	for _, r := range s.stop() {
		switch r["type"] {
		case "bind_failure":
			failures++
		case "repeats":
			repeats += r["count"].(float64)
		case "lost":
			lost += r["count"].(float64)
		case "stop":
			stop = r
		}
	}
	if stop == nil {
		t.Fatal("no stop record")
	}
	t.Logf("%d failures made; stop record %v", made, stop)
	num := func(k string) float64 { return stop[k].(float64) }
	if num("reported") >= ports || num("folded") == 0 {
		t.Fatalf("want the ring buffer to overflow (fewer than %d reported) and folds, for this test to mean anything: %v", ports, stop)
	}
	if num("failures") != float64(made) {
		t.Errorf("stop says %v failures, %d were made", stop["failures"], made)
	}
	if sum := num("reported") + num("folded") + num("lost") + num("unread"); sum != float64(made) {
		t.Errorf("reported + folded + lost + unread = %v, want the %d made", sum, made)
	}
	if failures != num("reported") || lost != num("lost") || repeats != num("folded") {
		t.Errorf("records: %v bind_failure, %v in repeats, %v in lost; stop says reported %v, folded %v, lost %v",
			failures, repeats, lost, stop["reported"], stop["folded"], stop["lost"])
	}
}
