package watch

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// leftoverUnderSubreaper runs "subreaper JOB" (JOB leaves a process
// holding tcp 127.0.0.1:port whose parent exits), waits until the holder is
// the subreaper's child, fails a bind on the port and returns the failure,
// the holder's entry in it, the holder's pid and the subreaper's pid.
func leftoverUnderSubreaper(t *testing.T, job string) (events.Failure, *events.Holder, int, int) {
	t.Helper()
	port := testenv.FreePort(t)
	s := attachSession(t, onlyPort(port))
	h := testenv.StartHelper(t, fmt.Sprintf("subreaper %s 127.0.0.1 %d", job, port))
	reaper := h.Cmd.Process.Pid
	testenv.WaitForParent(t, h.PID, reaper)
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	s.run()

	f := s.waitFailure(port)
	holder := heldBy(f, h.PID)
	if holder == nil {
		t.Fatalf("holders %+v: want the child %d", f.Holders, h.PID)
	}
	return f, holder, h.PID, reaper
}

// A leftover of a previous instance under a child subreaper (systemd
// --user, containerd-shim, tini): its parent is not init, so only the
// kernel's record of who listened shows what happened. The failing process
// is the same program (this test binary), as in a restart.
func TestLeftoverUnderSubreaper(t *testing.T) {
	t.Run("listener exited, child kept the socket", func(t *testing.T) {
		// subreaper → inherit (listens, starts keep, exits) → keep
		f, holder, pid, reaper := leftoverUnderSubreaper(t, "inherit")
		if p := holder.Processes[0]; p.PPID != reaper {
			t.Errorf("holder process %+v: want ppid %d (the subreaper)", p, reaper)
		}
		if b := holder.BoundBy; b == nil || b.PID == 0 || b.PID == pid || b.PID == reaper || b.Comm == "" {
			t.Errorf("bound_by %+v: want the exited listener (not %d, not %d)", b, pid, reaper)
		}
		want := "a leftover of a previous instance: it inherited the socket from"
		if !strings.Contains(f.Diagnosis, want) || !strings.Contains(f.Hint, fmt.Sprintf("kill %d", pid)) {
			t.Errorf("diagnosis %q / hint %q: want %q and kill %d", f.Diagnosis, f.Hint, want, pid)
		}
	})
	t.Run("parent exited after the child listened", func(t *testing.T) {
		// subreaper → orphan (starts hold, waits for it to listen, exits) → hold
		f, holder, pid, reaper := leftoverUnderSubreaper(t, "orphan tcp")
		p := holder.Processes[0]
		if p.PPID != reaper || p.OrigPPID == 0 || p.OrigPPID == reaper || p.OrigPPID == pid {
			t.Errorf("holder process %+v: want ppid %d (the subreaper) and orig_ppid the exited parent", p, reaper)
		}
		if holder.BoundBy != nil {
			t.Errorf("bound_by %+v: the listener is still the holder", holder.BoundBy)
		}
		want := fmt.Sprintf("its parent (pid %d) has exited since it started listening", p.OrigPPID)
		if !strings.Contains(f.Diagnosis, want) {
			t.Errorf("diagnosis %q: want %q", f.Diagnosis, want)
		}
	})
}
