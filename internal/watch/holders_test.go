package watch

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// holderProcess starts a helper process holding proto 127.0.0.1:port
// (listening, for tcp) and returns it once it does.
func holderProcess(t *testing.T, proto string, port int) *os.Process {
	t.Helper()
	return testenv.StartHelper(t, "hold "+proto+" 127.0.0.1 "+strconv.Itoa(port)).Cmd.Process
}

// heldBy returns the holder in f owned by pid, if any.
func heldBy(f events.Failure, pid int) *events.Holder {
	for i, h := range f.Holders {
		for _, p := range h.Processes {
			if p.PID == pid {
				return &f.Holders[i]
			}
		}
	}
	return nil
}

// The restart race: the holder is gone a moment after the failure, yet the
// failure names it, because the kernel captured it at that moment. The
// session reads nothing until the holder is dead, so /proc and sock_diag
// can no longer see it: only the kernel's record can name it. A TCP holder
// is recorded when it listens, a UDP one when it binds.
func TestHolderThatExitsAtOnce(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		for _, before := range []bool{false, true} {
			name := proto + map[bool]string{false: " bound after start", true: " bound before start"}[before]
			t.Run(name, func(t *testing.T) { holderThatExitsAtOnce(t, proto, before) })
		}
	}
}

func holderThatExitsAtOnce(t *testing.T, proto string, before bool) {
	port := testenv.FreePort(t)
	var holder *os.Process
	if before {
		holder = holderProcess(t, proto, port)
	}
	s := attachSession(t, onlyPort(port))
	if !before {
		holder = holderProcess(t, proto, port)
	}
	testenv.FailBind(t, proto, "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	holder.Kill()
	holder.Wait()
	s.run()

	f := s.waitFailure(port)
	h := heldBy(f, holder.Pid)
	if h == nil {
		t.Fatalf("holders %+v: want pid %d, which held the port at the failure and exited right after", f.Holders, holder.Pid)
	}
	state := map[string]string{"tcp": "LISTEN", "udp": "UNCONN"}[proto]
	if h.Proto != proto || h.State != state || h.Addr != "127.0.0.1" || int(h.Port) != port || h.Inode == 0 {
		t.Errorf("holder %+v: want %s %s 127.0.0.1:%d with its inode", h, proto, state, port)
	}
	if h.Source != events.Recorded {
		t.Errorf("holder source %q, want %q: it had exited before bindwatch looked", h.Source, events.Recorded)
	}
	if p := h.Processes[0]; p.Comm == "" || p.StartTime.IsZero() {
		t.Errorf("holder process %+v: want comm and start time from the kernel", p)
	}
	if before != h.Since.IsZero() {
		t.Errorf("holder since %v: want it known exactly when bindwatch saw the bind (bound after start: %v)", h.Since, !before)
	}
	if !strings.Contains(f.Diagnosis, "which has let go of it since") || !strings.Contains(f.Diagnosis, "a restart race") || f.Hint == "" {
		t.Errorf("diagnosis %q / hint %q: want the restart race", f.Diagnosis, f.Hint)
	}
}

// With NoHolders (--no-holders) the kernel keeps no record: a holder that
// exits before bindwatch looks goes unnamed, and the diagnosis says the
// port is free now rather than inventing one.
func TestNoHoldersRecordsNothing(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.NoHolders = true
	s := attachSession(t, cfg)
	holder := holderProcess(t, "udp", port)
	testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	holder.Kill()
	holder.Wait()
	s.run()

	f := s.waitFailure(port)
	if len(f.Holders) != 0 {
		t.Errorf("holders %+v: want none without the registry (the holder exited before bindwatch looked)", f.Holders)
	}
	if !strings.Contains(f.Diagnosis, "closed it before bindwatch looked") {
		t.Errorf("diagnosis %q: want the holder-gone case", f.Diagnosis)
	}
}

// A host that binds UDP ports by the thousand (a DNS resolver randomizing
// its source ports) must not push the TCP listeners out of the kernel's
// record: the listener here listened before 50,000 UDP binds, then exits at
// once after the failure, and is still named. The churn runs in a network
// namespace of its own, where it takes no port another test may want: the
// kernel's record is one for the whole host.
func TestListenerRecordSurvivesUDPChurn(t *testing.T) {
	port := testenv.FreePort(t)
	s := attachSession(t, onlyPort(port))
	holder := holderProcess(t, "tcp", port)
	bound := 0
	testenv.InPrivateNetns(t, testenv.PrivateNetns(t), func() {
		for p := 10000; p < 60000; p++ {
			fd, err := testenv.Socket("udp", "127.0.0.1", testenv.Opts{})
			if err != nil {
				t.Fatal(err)
			}
			if testenv.Bind(fd, "127.0.0.1", p) == nil {
				bound++
			}
			syscall.Close(fd)
		}
	})
	if bound < 2*16384 {
		t.Fatalf("only %d UDP binds succeeded: not enough to churn the registry", bound)
	}
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	holder.Kill()
	holder.Wait()
	s.run()

	f := s.waitFailure(port)
	if h := heldBy(f, holder.Pid); h == nil || h.Source != events.Recorded {
		t.Fatalf("holders %+v: want the exited listener %d, recorded before %d UDP binds", f.Holders, holder.Pid, bound)
	}
}
