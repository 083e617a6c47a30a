package tracer

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	os.Exit(m.Run())
}

// readFailure reads events until one on port arrives.
func readFailure(t *testing.T, tr *Tracer, port int) BindwatchEvent {
	t.Helper()
	var ev BindwatchEvent
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr.SetDeadline(deadline)
		if err := tr.readEvent(&ev); err != nil {
			t.Fatalf("no event on port %d: %v", port, err)
		}
		if int(ev.Port) == port {
			return ev
		}
	}
}

// Kernels before 5.15 pair the exit tracepoints with enter ones; the
// per-thread stash must be emptied on every path, success or failure. The
// tracepoint backend works on every kernel bindwatch supports, so this runs
// whatever backend the rest of the run is testing.
func TestTracepointPairedMode(t *testing.T) {
	testenv.RequireRoot(t)
	forced := argsInRegs
	argsInRegs = func() bool { return false }
	defer func() { argsInRegs = forced }()

	port := testenv.FreePort(t)
	tr, err := Open(Config{Backend: "tracepoint", Ports: []PortRange{{uint16(port), uint16(port)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, ok := tr.coll.Programs["tp_enter_bind"]; !ok {
		t.Fatal("paired mode did not load the enter program")
	}
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{}) // bind + listen succeed
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{ReuseAddr: true}, syscall.EADDRINUSE)
	ev := readFailure(t, tr, port)
	if ev.Err != uint32(syscall.EADDRINUSE) || ev.Pid != uint32(os.Getpid()) || ev.SockFlags&uint8(BindwatchBwSockFlagBW_SOCK_REUSEADDR) == 0 {
		t.Errorf("event %+v", ev)
	}
	if ev.HasHolder != 1 || ev.Holder.Tgid != uint32(os.Getpid()) {
		t.Errorf("recorded holder %+v (has %d): want this process's listener", ev.Holder, ev.HasHolder)
	}
	var k uint32
	var v BindwatchCallArgs
	if it := tr.maps.Inflight.Iterate(); it.Next(&k, &v) {
		t.Errorf("stash not cleaned up: thread %d left %+v", k, v)
	}
}

// An unknown backend is refused with the names of the known ones.
func TestUnknownBackend(t *testing.T) {
	_, err := Open(Config{Backend: "ebpf-magic"})
	if err == nil || !strings.Contains(err.Error(), "tracepoint") {
		t.Fatalf("Open(ebpf-magic) = %v, want an error naming the backends", err)
	}
}
