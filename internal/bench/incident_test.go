package bench

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// The incident programs hook sock:inet_sock_set_state (every TCP state
// change of the host) and signal:signal_generate (every signal). Their
// cost is a few tens of nanoseconds a call, far below what a loaded
// machine's noise does to phases that each attach the whole tracer; so
// these benchmarks load them once and attach and detach just them, in
// many short rounds back to back, and report the median of the rounds'
// ratios. Target: within 3%. BenchmarkIncidentFloor does the same with
// programs that return at once: the part of the cost that is the kernel's
// for running any BPF program on those tracepoints.
const hookRounds = 101

func openHooks(b *testing.B, open func() (*tracer.IncidentHooks, error)) *tracer.IncidentHooks {
	testenv.RequireRoot(b)
	h, err := open()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	return h
}

// attachable is a set of programs a benchmark attaches and detaches per
// round: tracer.IncidentHooks, tracer.ImpactHooks.
type attachable interface {
	Attach() error
	Detach()
}

// hooked runs phase untraced and traced (the incident programs attached)
// in alternating order, hookRounds times, and reports the ratios.
func hooked(b *testing.B, h attachable, n int, phase func() time.Duration) {
	for i := 0; i < b.N; i++ {
		var untraced, traced []time.Duration
		for r := 0; moreRounds(b, r, hookRounds); r++ {
			alternate(r, func() {
				untraced = append(untraced, phase())
			}, func() {
				if err := h.Attach(); err != nil {
					b.Fatal(err)
				}
				traced = append(traced, phase())
				h.Detach()
			})
		}
		report(b, untraced, traced, n)
	}
}

// churnConnections times n loopback connections to the listener on port:
// connect, accept, and close both ends with a reset (SO_LINGER 0, so no
// TIME_WAIT piles up). Each passes sock:inet_sock_set_state several times
// (SYN_SENT, ESTABLISHED, CLOSE on either side).
func churnConnections(b *testing.B, ln, port, n int) time.Duration {
	sa := &unix.SockaddrInet4{Addr: loopback, Port: port}
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Connect(c, sa); err != nil {
			b.Fatalf("connect: %v", err)
		}
		s, _, err := unix.Accept(ln)
		if err != nil {
			b.Fatalf("accept: %v", err)
		}
		unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, linger)
		unix.Close(c)
		unix.Close(s)
	}
	return time.Since(start)
}

// BenchmarkConnectChurn: loopback connect/accept/close. The program
// returns at its first comparison for every state change but a
// listener's close.
func BenchmarkConnectChurn(b *testing.B) {
	connectChurn(b, openHooks(b, tracer.OpenIncidentHooks))
}

func connectChurn(b *testing.B, h *tracer.IncidentHooks) {
	port := testenv.FreePort(b)
	ln := testenv.Hold(b, "tcp", "127.0.0.1", port, testenv.Opts{})
	const n = 200
	hooked(b, h, n, func() time.Duration { return churnConnections(b, ln, port, n) })
}

// signalStorm times n kill()s of sig to pid.
func signalStorm(b *testing.B, pid int, sig unix.Signal, n int) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := unix.Kill(pid, sig); err != nil {
			b.Fatalf("kill %d: %v", pid, err)
		}
	}
	return time.Since(start)
}

// BenchmarkSignalStorm: a storm of signals to a process that ignores them.
// The program returns at its first comparison for a signal that is not a
// stop signal (SIGUSR1); a stop signal (SIGTERM) to a process that holds
// no port with an open incident costs it one hash lookup more.
func BenchmarkSignalStorm(b *testing.B) {
	h := openHooks(b, tracer.OpenIncidentHooks)
	pid := signalTarget(b)
	for _, c := range []struct {
		name string
		sig  unix.Signal
	}{{"SIGUSR1", unix.SIGUSR1}, {"SIGTERM", unix.SIGTERM}} {
		b.Run(c.name, func(b *testing.B) { stormOf(b, h, pid, c.sig) })
	}
}

// BenchmarkIncidentFloor: the churn and the storm with an empty program on
// each tracepoint instead of bindwatch's.
func BenchmarkIncidentFloor(b *testing.B) {
	h := openHooks(b, tracer.OpenEmptyIncidentHooks)
	b.Run("ConnectChurn", func(b *testing.B) { connectChurn(b, h) })
	pid := signalTarget(b)
	b.Run("SignalStorm", func(b *testing.B) { stormOf(b, h, pid, unix.SIGUSR1) })
}

// signalTarget starts a process that ignores SIGUSR1 and SIGTERM, for the
// length of the benchmark.
func signalTarget(b *testing.B) int {
	target := exec.Command("sh", "-c", `trap "" USR1 TERM; while :; do sleep 60; done`)
	if err := target.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { target.Process.Kill(); target.Wait() })
	time.Sleep(200 * time.Millisecond) // the traps are set
	return target.Process.Pid
}

func stormOf(b *testing.B, h *tracer.IncidentHooks, pid int, sig unix.Signal) {
	const n = 2000
	hooked(b, h, n, func() time.Duration { return signalStorm(b, pid, sig, n) })
}
