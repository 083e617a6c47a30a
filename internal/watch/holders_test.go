package watch

import (
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// holderProcess starts a helper process listening on 127.0.0.1:port and
// returns it once it listens.
func holderProcess(t *testing.T, port int) *os.Process {
	t.Helper()
	return testenv.StartHelper(t, "hold tcp 127.0.0.1 "+strconv.Itoa(port)).Cmd.Process
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
// can no longer see it: only the kernel's record can name it.
func TestHolderThatExitsAtOnce(t *testing.T) {
	for _, before := range []bool{false, true} {
		name := map[bool]string{false: "listened after start", true: "listened before start"}[before]
		t.Run(name, func(t *testing.T) {
			port := testenv.FreePort(t)
			var holder *os.Process
			if before {
				holder = holderProcess(t, port)
			}
			s := attachSession(t, onlyPort(port))
			if !before {
				holder = holderProcess(t, port)
			}
			testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
			holder.Kill()
			holder.Wait()
			s.run()

			f := s.waitFailure(port)
			h := heldBy(f, holder.Pid)
			if h == nil {
				t.Fatalf("holders %+v: want pid %d, which held the port at the failure and exited right after", f.Holders, holder.Pid)
			}
			if h.State != "LISTEN" || h.Addr != "127.0.0.1" || int(h.Port) != port || h.Inode == 0 {
				t.Errorf("holder %+v: want LISTEN 127.0.0.1:%d with its inode", h, port)
			}
			if h.Source != events.Recorded {
				t.Errorf("holder source %q, want %q: it had exited before bindwatch looked", h.Source, events.Recorded)
			}
			if p := h.Processes[0]; p.Comm == "" || p.StartTime.IsZero() {
				t.Errorf("holder process %+v: want comm and start time from the kernel", p)
			}
			if f.Diagnosis == "" || f.Hint == "" {
				t.Errorf("no diagnosis/hint: %q / %q", f.Diagnosis, f.Hint)
			}
		})
	}
}
