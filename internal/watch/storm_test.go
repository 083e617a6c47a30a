package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"golang.org/x/sys/unix"
)

// holdPortBlock listens on n consecutive TCP ports of 127.0.0.1, below the
// ephemeral range (where FreePort's ports are), and returns the first.
func holdPortBlock(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		lo := 10000 + rand.IntN(20000)
		var fds []int
		ok := true
		for p := lo; p < lo+n && ok; p++ {
			fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
			ok = testenv.Bind(fd, "127.0.0.1", p) == nil && unix.Listen(fd, 1) == nil
		}
		if ok {
			t.Cleanup(func() {
				for _, fd := range fds {
					unix.Close(fd)
				}
			})
			return lo
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	t.Fatalf("no block of %d free ports found", n)
	return 0
}

// An unprivileged user fails binds over more than twice as many distinct
// (process, port, errno, socket) keys as the fold table holds, for 5 s
// (issue 8: this killed the tracer). Afterwards the tracer still runs and
// names the next real failure's holder; the stop record counts exactly
// the failures provoked, each term measured on its own; repeats records
// sum to the folded count; and the full table was counted.
func TestUnprivilegedKeyStorm(t *testing.T) {
	testenv.RequireRoot(t)
	const ports, sockets, seconds = 128, 600, 5
	lo := holdPortBlock(t, ports+1) // the last port is for the real failure
	real := lo + ports
	// A small ring buffer, so that the backlog after the storm is read in
	// a second, not in a minute of holder lookups.
	s := startSession(t, tracer.Config{Ports: []tracer.PortRange{{Lo: uint16(lo), Hi: uint16(real)}}, Fold: time.Second, RingSize: 1 << 16})
	tr := s.s.Tracer()
	if capacity := 2 * tr.FoldEntries(); ports*sockets <= 2*capacity {
		t.Fatalf("%d keys is not more than twice the fold table's %d", ports*sockets, capacity)
	}

	storm := testenv.HelperAsUser(t, fmt.Sprintf("keystorm 127.0.0.1 %d %d %d %d", lo, real-1, sockets, seconds), 65534)
	out, err := storm.Output()
	if err != nil {
		t.Fatalf("storm as uid 65534: %v", err)
	}
	var provoked uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "failed %d", &provoked); err != nil || provoked == 0 {
		t.Fatalf("storm said %q", out)
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
			stormNamed = stormNamed || int(r["pid"].(float64)) == storm.Process.Pid
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
		t.Errorf("no repeats record names the storm's pid %d", storm.Process.Pid)
	}
}

// waitOwnFailure waits for this process's failure on port, behind whatever
// else the session is still reporting. It reads only what was written
// since it last looked: a storm leaves megabytes of repeats records.
func waitOwnFailure(t *testing.T, s *session, port int) events.Failure {
	t.Helper()
	seen := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
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
	t.Fatalf("this process's failure on port %d was not reported within 30s", port)
	return events.Failure{}
}
