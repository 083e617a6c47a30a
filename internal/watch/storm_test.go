package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// An unprivileged user fails binds over more than twice as many distinct
// (process, port, errno, socket) keys as the fold table holds, every key
// twice (issue 8: this killed the tracer). Afterwards the tracer still
// runs and names the next real failure's holder; the stop record counts
// exactly the failures provoked, each term measured on its own; repeats
// records sum to the folded count; and the full table was counted.
//
// The keys are spread over processes and ports, because the kernel
// function backends tell a process's sockets apart by protocol only (the
// tracepoint one by fd): a few processes, each failing on 24,576 ports
// with an address no host has (EADDRNOTAVAIL: no port needs a holder).
// The storm is sized by its keys, not by seconds, and the fold table is
// harvested only at the stop: a generation fills when more distinct keys
// fail than it holds between two harvests, and an emulated kernel (the
// qemu matrix) makes a few thousand failures a second — no 100 ms tick's
// generation would ever fill there. (Harvesting a full generation is
// TestHarvestFullFoldTable's.)
func TestUnprivilegedKeyStorm(t *testing.T) {
	testenv.RequireRoot(t)
	const procs, ports, passes = 3, 24576, 2
	// The storm's ports lie below the ephemeral range, where no other
	// package's test picks a port (testenv.FreePort's come from the
	// ephemeral range): the tests of other packages, running at the same
	// time with tracers of their own on such ports, must not count the
	// storm's failures (a metrics test once did). uid 65534 may bind
	// from 1024 on.
	const stormLo, stormHi = 1024, 1024 + ports - 1
	real := testenv.FreePort(t) // for the real failure, outside the storm's ports
	testenv.Hold(t, "tcp", "127.0.0.1", real, testenv.Opts{})
	// A small ring buffer, so that the backlog after the storm is read in
	// a second, not in a minute of holder lookups.
	cfg := tracer.Config{
		Ports: []tracer.PortRange{{Lo: stormLo, Hi: stormHi}, {Lo: uint16(real), Hi: uint16(real)}},
		Fold:  time.Second, RingSize: 1 << 16,
		// Its own network namespace only: tests of a run beside this one
		// use fixed ports of that range in namespaces of their own.
		Netns: testenv.Netns(t),
	}
	s := startSessionTick(t, cfg, time.Hour)
	tr := s.s.Tracer()
	if capacity := 2 * tr.FoldEntries(); procs*ports <= 2*capacity {
		t.Fatalf("%d keys is not more than twice the fold table's %d", procs*ports, capacity)
	}

	storms := make([]*exec.Cmd, procs)
	outs := make([]bytes.Buffer, procs)
	for i := range storms {
		storms[i] = testenv.HelperAsUser(t, fmt.Sprintf("keystorm 192.0.2.1 %d %d 1 %d", stormLo, stormHi, passes), 65534)
		storms[i].Stdout = &outs[i]
		if err := storms[i].Start(); err != nil {
			t.Fatalf("storm as uid 65534: %v", err)
		}
	}
	var provoked uint64
	for i, storm := range storms {
		if err := storm.Wait(); err != nil {
			t.Fatalf("storm as uid 65534: %v", err)
		}
		var n uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(outs[i].String()), "failed %d", &n); err != nil || n != passes*ports {
			t.Fatalf("storm said %q, want failed %d", outs[i].String(), passes*ports)
		}
		provoked += n
	}

	// Alive: once the backlog is read, a real failure is reported, holder named.
	for deadline := time.Now().Add(60 * time.Second); tr.Unread() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the ring buffer still holds %d records a minute after the storm", tr.Unread())
		}
	}
	testenv.FailBind(t, "tcp", "127.0.0.1", real, testenv.Opts{}, syscall.EADDRINUSE)
	provoked++
	f := waitOwnFailure(t, s, real)
	if heldBy(f, os.Getpid()) == nil {
		t.Errorf("the failure after the storm names holders %+v, want this process (pid %d)", f.Holders, os.Getpid())
	}

	var reported, folded, lost float64
	var stop map[string]any
	stormNamed := false
	for _, r := range s.stop() {
		switch r["type"] {
		case events.TypeFailure:
			reported++
		case events.TypeRepeats:
			folded += r["count"].(float64)
			for _, storm := range storms {
				stormNamed = stormNamed || int(r["pid"].(float64)) == storm.Process.Pid
			}
		case events.TypeLost:
			lost += r["count"].(float64)
		case events.TypeStop:
			stop = r
		}
	}
	if stop == nil {
		t.Fatal("no stop record")
	}
	t.Logf("%d failures provoked; stop record %v", provoked, stop)
	num := func(k string) float64 { return stop[k].(float64) }
	if num("failures") != float64(provoked) {
		t.Errorf("stop says %v failures, %d were provoked", num("failures"), provoked)
	}
	if sum := num("reported") + num("folded") + num("lost") + num("unread"); sum != float64(provoked) {
		t.Errorf("reported + folded + lost + unread = %v, want the %d provoked", sum, provoked)
	}
	if reported != num("reported") || folded != num("folded") || lost != num("lost") {
		t.Errorf("records: %v bind_failure, %v in repeats, %v in lost; stop says %v, %v, %v",
			reported, folded, lost, num("reported"), num("folded"), num("lost"))
	}
	if num("unfolded") == 0 {
		t.Errorf("no failure found the fold table full: the storm did not fill it (%v)", stop)
	}
	if !stormNamed {
		t.Errorf("no repeats record names a storm process")
	}
}

// waitOwnFailure waits for this process's failure on port, behind whatever
// else the session is still reporting. It reads only what was written
// since it last looked: a storm leaves megabytes of repeats records.
func waitOwnFailure(t *testing.T, s *session, port int) events.Failure {
	t.Helper()
	seen := 0
	for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out := s.out.Bytes()
		end := bytes.LastIndexByte(out, '\n') + 1
		for _, line := range bytes.Split(out[seen:end], []byte("\n")) {
			if !bytes.Contains(line, []byte(`"type":"bind_failure"`)) {
				continue
			}
			var f events.Failure
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("bind_failure record does not decode: %v", err)
			}
			if int(f.Port) == port && f.Process.PID == os.Getpid() {
				return f
			}
		}
		seen = end
	}
	t.Fatalf("this process's failure on port %d was not reported within 3m", port)
	return events.Failure{}
}
