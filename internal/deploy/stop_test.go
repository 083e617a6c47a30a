package deploy

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// planHolder starts a helper holding 127.0.0.1:PORT/tcp and plans to free
// the port: the plan must name the helper as the one process to signal.
func planHolder(t *testing.T) (*testenv.HelperProc, *Plan) {
	t.Helper()
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	h := testenv.StartHelper(t, "hold tcp 127.0.0.1 "+strconv.Itoa(port))
	r, err := resolve.New(resolve.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pl, err := PlanFree(r, []Port{{uint16(port), "tcp"}}, StopOptions{Grace: 2 * time.Second, Force: true, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pl.Close)
	if len(pl.Targets) != 1 || pl.Targets[0].Process.PID != h.PID || !pl.Ports[0].Stoppable() {
		t.Fatalf("plan: targets %+v, stoppable %v; want the helper %d", pl.Targets, pl.Ports[0].Stoppable(), h.PID)
	}
	return h, pl
}

// stop runs the plan and returns its log.
func stop(t *testing.T, pl *Plan) string {
	t.Helper()
	var log []string
	if err := pl.Stop(context.Background(), func(s string) { log = append(log, s) }); err != nil {
		t.Fatal(err)
	}
	return strings.Join(log, "\n")
}

// Kill safety: between the plan and the signal, the process the plan
// names may stop being the holder. Stop re-checks through a pidfd that the
// process still has the socket, and signals nothing otherwise.
func TestStopSignalsOnlyWhatStillHoldsTheSocket(t *testing.T) {
	t.Run("control: the holder keeps its socket and is signalled", func(t *testing.T) {
		h, pl := planHolder(t)
		log := stop(t, pl)
		if tg := pl.Targets[0]; len(tg.Sent) != 1 || !tg.Exited {
			t.Errorf("target sent %v, exited %v; want SIGTERM, exited\n%s", tg.Sent, tg.Exited, log)
		}
		if _, err := h.Say("ping"); err == nil {
			t.Error("the holder still answers after SIGTERM")
		}
	})
	t.Run("the holder closed its socket and runs on", func(t *testing.T) {
		h, pl := planHolder(t)
		if got, err := h.Say("close"); err != nil || got != "closed" {
			t.Fatalf("close: %q, %v", got, err)
		}
		log := stop(t, pl)
		tg := pl.Targets[0]
		if len(tg.Sent) != 0 || tg.SignalErr == nil || !strings.Contains(tg.SignalErr.Error(), "no longer has the socket open") {
			t.Errorf("target sent %v (%v); want nothing sent, because it no longer has the socket\n%s", tg.Sent, tg.SignalErr, log)
		}
		if got, err := h.Say("ping"); err != nil || got != "pong" {
			t.Errorf("the holder that closed its socket was stopped: %q, %v\n%s", got, err, log)
		}
	})
	t.Run("the holder exited and its pid was reused", func(t *testing.T) {
		h, pl := planHolder(t)
		pid := h.PID
		h.Stop() // exits and is reaped: its pid is free
		other := reusePID(t, pid)
		log := stop(t, pl)
		tg := pl.Targets[0]
		if len(tg.Sent) != 0 || tg.SignalErr == nil || !strings.Contains(tg.SignalErr.Error(), "no longer has the socket open") {
			t.Errorf("target sent %v (%v); want nothing sent to the new process with its pid\n%s", tg.Sent, tg.SignalErr, log)
		}
		if got, err := other.Say("ping"); err != nil || got != "pong" {
			t.Errorf("the process that reused pid %d was stopped: %q, %v\n%s", pid, got, err, log)
		}
	})
}

// reusePID starts a helper process with the given (free) pid: the kernel
// hands out the pid after ns_last_pid next, so set it just below and
// start one. Other processes on the host fork too; try again until it
// lands.
func reusePID(t *testing.T, pid int) *testenv.HelperProc {
	t.Helper()
	for try := 0; try < 100; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Fatalf("set the next pid: %v", err)
		}
		h, err := testenv.SpawnHelper("hold udp 127.0.0.1 0")
		if err != nil {
			t.Fatal(err)
		}
		if h.PID == pid {
			t.Cleanup(h.Stop)
			return h
		}
		h.Stop()
	}
	t.Fatalf("could not start a process with pid %d in 100 tries", pid)
	return nil
}
