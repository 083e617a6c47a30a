package tracer

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	os.Exit(m.Run())
}

// readFailure reads events until one on port arrives.
func readFailure(t *testing.T, tr *Tracer, port int) bindwatchEvent {
	t.Helper()
	var ev bindwatchEvent
	deadline := time.Now().Add(testenv.StartTimeout)
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
	if ev.Err != uint32(syscall.EADDRINUSE) || ev.Pid != uint32(os.Getpid()) || ev.SockFlags&uint8(bindwatchBwSockFlagBW_SOCK_REUSEADDR) == 0 {
		t.Errorf("event %+v", ev)
	}
	if ev.HasHolder != 1 || ev.Holder.Tgid != uint32(os.Getpid()) {
		t.Errorf("recorded holder %+v (has %d): want this process's listener", ev.Holder, ev.HasHolder)
	}
	var k uint32
	var v bindwatchCallArgs
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

// The kernel captures the head and the tail of a long command line: a
// Java service with 10 KB of classpath keeps its main class and flags, and
// the record says what it holds is not the whole thing. A short one is
// captured whole.
func TestLongCommandLineKeepsHeadAndTail(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	tr, err := Open(Config{Backend: testenv.Backend(), Ports: []PortRange{{uint16(port), uint16(port)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	classpath := strings.Repeat("/opt/app/lib/some-library-1.2.3.jar:", 280) // ~10 KB
	for _, c := range []struct {
		name          string
		args          []string
		wantTail      []string
		wantTruncated bool
	}{
		{"java", []string{"-Xmx1g", "-cp", classpath, "com.example.Main", "--server.port=8080"},
			[]string{"-cp", events.CmdlineGap, "com.example.Main", "--server.port=8080"}, true},
		{"short", []string{"--server.port=8080"}, []string{"-test.run=^$", "--server.port=8080"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := testenv.Helper(fmt.Sprintf("bind tcp 127.0.0.1 %d", port))
			cmd.Args = append(cmd.Args, c.args...)
			if err := cmd.Run(); cmd.ProcessState.ExitCode() != int(syscall.EADDRINUSE) {
				t.Fatalf("helper: %v, want exit %d (EADDRINUSE)", err, syscall.EADDRINUSE)
			}
			for {
				ev := readFailure(t, tr, port)
				if int(ev.Pid) != cmd.Process.Pid {
					continue
				}
				p := decodeProcess(&ev, tr.Time)
				if p.Cmdline[0] != testenv.HelperBinary() || !slices.Equal(p.Cmdline[len(p.Cmdline)-len(c.wantTail):], c.wantTail) ||
					p.CmdlineTruncated != c.wantTruncated {
					t.Errorf("cmdline %q (truncated %v), want %s … %q (truncated %v)",
						p.Cmdline, p.CmdlineTruncated, testenv.HelperBinary(), c.wantTail, c.wantTruncated)
				}
				if want := len(strings.Join(cmd.Args, " ")) + 1; int(ev.ArgsTotal) != want {
					t.Errorf("args_total %d, want %d", ev.ArgsTotal, want)
				}
				break
			}
		})
	}
}
