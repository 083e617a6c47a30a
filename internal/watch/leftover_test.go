package watch

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// leftoverUnderSubreaper runs "subreaper JOB 127.0.0.1 PORT HOW" (JOB leaves
// a process holding tcp 127.0.0.1:port whose parent exits, or with HOW
// "killed" is killed), waits until the holder is
// the subreaper's child, fails a bind on the port and returns the failure,
// the holder's entry in it, the holder's pid and the subreaper's pid.
func leftoverUnderSubreaper(t *testing.T, job string, how ...string) (events.Failure, *events.Holder, int, int) {
	t.Helper()
	port := testenv.FreePort(t)
	s := attachSession(t, onlyPort(port))
	h := testenv.StartHelper(t, strings.TrimSpace(fmt.Sprintf("subreaper %s 127.0.0.1 %d %s", job, port, strings.Join(how, " "))))
	reaper := h.Cmd.Process.Pid
	testenv.WaitForParent(t, h.PID, reaper)
	// The failing bind comes from another helper: the same program as
	// the holder, as a restart is.
	if l := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 127.0.0.1 %d", port)).Line; len(l) < 2 || l[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
		t.Fatalf("trybind said %q, want errno %d", l, syscall.EADDRINUSE)
	}
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
// kernel's record of who listened, and how that process ended, shows what
// happened. The failing process is the same program (this test binary), as
// in a restart.
func TestLeftoverUnderSubreaper(t *testing.T) {
	t.Run("listener killed, child kept the socket", func(t *testing.T) {
		// subreaper → inherit (listens, starts keep, is killed) → keep
		f, holder, pid, reaper := leftoverUnderSubreaper(t, "inherit", "killed")
		if p := holder.Processes[0]; p.PPID != reaper {
			t.Errorf("holder process %+v: want ppid %d (the subreaper)", p, reaper)
		}
		b := holder.BoundBy
		if b == nil || b.PID == 0 || b.PID == pid || b.PID == reaper || b.Comm == "" {
			t.Fatalf("bound_by %+v: want the exited listener (not %d, not %d)", b, pid, reaper)
		}
		if b.Exit == nil || b.Exit.Signal != "SIGKILL" || b.Exit.Code != nil || b.Exit.Time.Before(b.StartTime) {
			t.Errorf("bound_by.exit %+v: want killed by SIGKILL after it started", b.Exit)
		}
		want := fmt.Sprintf("a leftover of a previous instance: %s (pid %d)", holder.Processes[0].Comm, pid)
		if f.Cause != events.CauseLeftover || f.Confidence != events.ConfidenceCertain ||
			!strings.Contains(f.Diagnosis, want) || !strings.Contains(f.Diagnosis, "was killed by SIGKILL") || !strings.Contains(f.Hint, fmt.Sprintf("kill %d", pid)) {
			t.Errorf("cause %s (%s), diagnosis %q / hint %q: want a certain leftover, %q, killed by SIGKILL, kill %d", f.Cause, f.Confidence, f.Diagnosis, f.Hint, want, pid)
		}
	})
	t.Run("listener exited 0 at once: a daemon handing over, not a leftover", func(t *testing.T) {
		// subreaper → inherit (listens, starts keep, exits 0) → keep
		f, holder, pid, _ := leftoverUnderSubreaper(t, "inherit")
		b := holder.BoundBy
		if b == nil || b.Exit == nil || b.Exit.Code == nil || *b.Exit.Code != 0 || b.Exit.Signal != "" {
			t.Fatalf("bound_by %+v: want the launcher, exited with status 0", b)
		}
		if f.Cause != events.CauseAlreadyRunning || !strings.Contains(f.Diagnosis, "It is the running daemon") ||
			strings.Contains(f.Hint, fmt.Sprintf("kill %d", pid)) {
			t.Errorf("cause %s, diagnosis %q / hint %q: want already_running, the running daemon, no kill %d", f.Cause, f.Diagnosis, f.Hint, pid)
		}
	})
	t.Run("parent killed after the child listened", func(t *testing.T) {
		// subreaper → orphan (starts hold, waits for it to listen, is killed) → hold
		f, holder, pid, reaper := leftoverUnderSubreaper(t, "orphan tcp", "killed")
		p := holder.Processes[0]
		if p.PPID != reaper || p.OrigPPID == 0 || p.OrigPPID == reaper || p.OrigPPID == pid {
			t.Errorf("holder process %+v: want ppid %d (the subreaper) and orig_ppid the exited parent", p, reaper)
		}
		if holder.BoundBy != nil {
			t.Errorf("bound_by %+v: the listener is still the holder", holder.BoundBy)
		}
		if e := p.OrigParentExit; e == nil || e.Signal != "SIGKILL" {
			t.Errorf("orig_parent_exit %+v: want killed by SIGKILL", e)
		}
		want := fmt.Sprintf("its parent then (pid %d) was killed by SIGKILL", p.OrigPPID)
		if f.Cause != events.CauseLeftover || f.Confidence != events.ConfidenceLikely || !strings.Contains(f.Diagnosis, want) {
			t.Errorf("cause %s (%s), diagnosis %q: want a likely leftover, %q", f.Cause, f.Confidence, f.Diagnosis, want)
		}
	})
	t.Run("parent exited 0 right after the child listened: it daemonized", func(t *testing.T) {
		f, holder, _, _ := leftoverUnderSubreaper(t, "orphan tcp")
		if e := holder.Processes[0].OrigParentExit; e == nil || e.Code == nil || *e.Code != 0 {
			t.Errorf("orig_parent_exit %+v: want status 0", e)
		}
		if f.Cause != events.CauseAlreadyRunning || !strings.Contains(f.Diagnosis, "it daemonized") {
			t.Errorf("cause %s, diagnosis %q: want already_running, daemonized", f.Cause, f.Diagnosis)
		}
	})
}
