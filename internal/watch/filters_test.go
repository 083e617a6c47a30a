package watch

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// helperFail runs a helper process whose bind on port fails with EADDRINUSE
// and returns its pid.
func helperFail(t *testing.T, port int) int {
	t.Helper()
	cmd := testenv.Helper("bind udp 127.0.0.1 " + strconv.Itoa(port))
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != int(syscall.EADDRINUSE) {
		t.Fatalf("helper bind exited %d, want EADDRINUSE", code)
	}
	return cmd.Process.Pid
}

// pidsOf returns the pids of the failures reported, after a sentinel
// failure on sentinel (by this process) shows everything before it is in.
func pidsOf(s *session, port, sentinel int) map[int]bool {
	testenv.Hold(s.t, "udp", "127.0.0.1", sentinel, testenv.Opts{})
	testenv.FailBind(s.t, "udp", "127.0.0.1", sentinel, testenv.Opts{}, syscall.EADDRINUSE)
	s.waitFailure(sentinel)
	pids := map[int]bool{}
	for _, f := range s.failures() {
		if int(f.Port) == port {
			pids[f.Process.PID] = true
		}
	}
	return pids
}

func TestPortFilter(t *testing.T) {
	watched, other := testenv.FreePort(t), testenv.FreePort(t)
	s := startSession(t, onlyPort(watched))
	testenv.Hold(t, "udp", "127.0.0.1", other, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", other, testenv.Opts{}, syscall.EADDRINUSE)
	testenv.Hold(t, "udp", "127.0.0.1", watched, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", watched, testenv.Opts{}, syscall.EADDRINUSE)
	s.waitFailure(watched)
	for _, f := range s.failures() {
		if int(f.Port) != watched {
			t.Errorf("failure on port %d reported; only %d is watched", f.Port, watched)
		}
	}
}

// A port range keeps both of its ends and drops the ports just outside
// them. The failures are EADDRNOTAVAIL (a non-local address), so no port
// needs to be held; those outside the range come first, and once the range's
// last one is reported the earlier ones would have been too.
func TestPortRangeFilter(t *testing.T) {
	lo := max(testenv.FreePort(t), 2)
	hi := min(lo+4, 65534)
	s := startSession(t, tracer.Config{Ports: []tracer.PortRange{{Lo: uint16(lo), Hi: uint16(hi)}}})
	for _, port := range []int{lo - 1, hi + 1, lo, hi} {
		testenv.FailBind(t, "udp", "203.0.113.9", port, testenv.Opts{}, syscall.EADDRNOTAVAIL)
	}
	s.waitFailure(hi)
	got := map[int]bool{}
	for _, f := range s.failures() {
		got[int(f.Port)] = true
	}
	if !got[lo] || !got[hi] || len(got) != 2 {
		t.Errorf("--port %d-%d reported ports %v, want exactly %d and %d (not %d, %d)", lo, hi, got, lo, hi, lo-1, hi+1)
	}
}

func TestPIDFilter(t *testing.T) {
	port, sentinel := testenv.FreePort(t), testenv.FreePort(t)
	cfg := tracer.Config{PIDs: []uint32{uint32(os.Getpid())}, Ports: []tracer.PortRange{{Lo: uint16(port), Hi: uint16(port)}, {Lo: uint16(sentinel), Hi: uint16(sentinel)}}}
	s := startSession(t, cfg)
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	other := helperFail(t, port)
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	pids := pidsOf(s, port, sentinel)
	if !pids[os.Getpid()] || pids[other] {
		t.Errorf("reported pids %v: want only %d, not %d", pids, os.Getpid(), other)
	}
}

func TestFollowChildren(t *testing.T) {
	port, sentinel := testenv.FreePort(t), testenv.FreePort(t)
	cfg := tracer.Config{PIDs: []uint32{uint32(os.Getpid())}, FollowChildren: true,
		Ports: []tracer.PortRange{{Lo: uint16(port), Hi: uint16(port)}, {Lo: uint16(sentinel), Hi: uint16(sentinel)}}}
	s := startSession(t, cfg)
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	child := helperFail(t, port)
	if pids := pidsOf(s, port, sentinel); !pids[child] {
		t.Errorf("reported pids %v: want the child %d, forked after tracing started", pids, child)
	}
}

func TestCommFilter(t *testing.T) {
	port, sentinel := testenv.FreePort(t), testenv.FreePort(t)
	s := startSession(t, tracer.Config{Comm: "helper"})
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	testenv.Hold(t, "udp", "127.0.0.1", sentinel, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	cmd := testenv.HelperAsUser(t, "bind udp 127.0.0.1 "+strconv.Itoa(sentinel), 0)
	cmd.Run()
	f := s.waitFailure(sentinel)
	if f.Process.Comm != "helper" {
		t.Errorf("comm = %q, want helper", f.Process.Comm)
	}
	for _, f := range s.failures() {
		if f.Process.Comm != "helper" {
			t.Errorf("failure of comm %q reported with --comm helper", f.Process.Comm)
		}
	}
}

func TestErrnoFilter(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.Errnos = []syscall.Errno{syscall.EADDRNOTAVAIL}
	s := startSession(t, cfg)
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	testenv.FailBind(t, "udp", "203.0.113.9", port, testenv.Opts{}, syscall.EADDRNOTAVAIL)
	if f := s.waitFailure(port); f.Errno != "EADDRNOTAVAIL" {
		t.Errorf("reported %s with --errno EADDRNOTAVAIL", f.Errno)
	}
}

// stormCounts runs n failing binds in a helper process and returns the
// session's records summed up.
type counts struct {
	failures, repeats, lostRecords float64
	stop                           map[string]any
}

func storm(t *testing.T, cfg tracer.Config, port, n int) counts {
	t.Helper()
	s := startSession(t, cfg)
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	cmd := testenv.Helper("storm udp 127.0.0.1 " + strconv.Itoa(port) + " " + strconv.Itoa(n))
	if err := cmd.Run(); err != nil {
		t.Fatalf("storm helper: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	var c counts
	for _, r := range s.stop() {
		switch r["type"] {
		case "bind_failure":
			c.failures++
		case "repeats":
			c.repeats += r["count"].(float64)
		case "lost":
			c.lostRecords += r["count"].(float64)
		case "stop":
			c.stop = r
		}
	}
	if c.stop == nil {
		t.Fatal("no stop record")
	}
	return c
}

// Folding: a storm of identical failures is one event plus repeats, and
// every failure is accounted for.
func TestFoldedStorm(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.Fold = time.Hour
	c := storm(t, cfg, port, 1000)
	if c.failures != 1 || c.repeats != 999 {
		t.Errorf("%v bind_failure + %v repeats, want 1 + 999", c.failures, c.repeats)
	}
	if c.stop["failures"] != 1000.0 || c.stop["folded"] != 999.0 || c.stop["reported"] != 1.0 {
		t.Errorf("stop record %v: want failures 1000, folded 999, reported 1", c.stop)
	}
}

// A ring buffer too small for a storm loses events, and says how many.
func TestLostReported(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.RingSize = os.Getpagesize()
	c := storm(t, cfg, port, 5000)
	lost := c.stop["lost"].(float64)
	if lost == 0 {
		t.Fatalf("no loss with a %d-byte ring buffer and 5000 failures: %v", cfg.RingSize, c.stop)
	}
	if c.repeats != 0 {
		t.Errorf("%v repeats reported without folding: lost events must not count as repeats", c.repeats)
	}
	if c.lostRecords != lost {
		t.Errorf("lost records sum to %v, stop says %v", c.lostRecords, lost)
	}
	if c.stop["failures"] != 5000.0 || c.stop["reported"].(float64)+lost != 5000 || c.failures != c.stop["reported"] {
		t.Errorf("stop %v with %v bind_failure records: want failures 5000 = reported + lost", c.stop, c.failures)
	}
}

// --netns: a failure in the named network namespace is reported, the same
// failure in bindwatch's own is not (filtered in the kernel by the task's
// namespace).
func TestNetnsFilter(t *testing.T) {
	port := testenv.FreePort(t)
	name, inode := testenv.NewNetns(t)
	s := startSession(t, tracer.Config{Netns: inode, Ports: []tracer.PortRange{{Lo: uint16(port), Hi: uint16(port)}}})
	testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	inNS := testenv.InNetns(name)
	testenv.StartHelper(t, "hold udp 127.0.0.1 "+strconv.Itoa(port), inNS...)
	try := testenv.StartHelper(t, "trybind udp 127.0.0.1 "+strconv.Itoa(port), inNS...)
	tryPID, _ := strconv.Atoi(try.Line[2])
	s.waitFailure(port)
	for _, f := range s.failures() {
		if f.Process.PID != tryPID || f.Process.Netns != inode {
			t.Errorf("failure of pid %d in netns %d reported; want only pid %d's, in netns %d", f.Process.PID, f.Process.Netns, tryPID, inode)
		}
	}
}
