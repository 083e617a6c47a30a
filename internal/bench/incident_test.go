package bench

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// churnConnections times n loopback connections to the listener on port:
// connect, accept, and close both ends with a reset (SO_LINGER 0, so no
// TIME_WAIT piles up). Each passes the sock:inet_sock_set_state tracepoint
// several times (SYN_SENT, ESTABLISHED, CLOSE on either side).
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

// BenchmarkConnectChurn: loopback connect/accept/close, untraced and
// traced. The incident program on sock:inet_sock_set_state returns at its
// first comparison for every state change but a listener's close. Target:
// within 3%.
func BenchmarkConnectChurn(b *testing.B) {
	testenv.RequireRoot(b)
	port := testenv.FreePort(b)
	ln := testenv.Hold(b, "tcp", "127.0.0.1", port, testenv.Opts{})
	const n = 1000
	for i := 0; i < b.N; i++ {
		var untraced, traced []time.Duration
		for r := 0; r < rounds; r++ {
			alternate(r, func() {
				untraced = append(untraced, churnConnections(b, ln, port, n))
			}, func() {
				p := attach(b, false, 0)
				traced = append(traced, churnConnections(b, ln, port, n))
				p.detach(b)
			})
		}
		report(b, untraced, traced, n)
	}
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

// BenchmarkSignalStorm: a storm of signals to a process that ignores them,
// untraced and traced. signal:signal_generate fires for each; the incident
// program returns at its first comparison for a signal that is not a stop
// signal (SIGUSR1), and after one map lookup for a stop signal to a
// process that holds no port with an open incident (SIGTERM). Target:
// within 3%.
func BenchmarkSignalStorm(b *testing.B) {
	testenv.RequireRoot(b)
	target := exec.Command("sh", "-c", `trap "" USR1 TERM; while :; do sleep 60; done`)
	if err := target.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { target.Process.Kill(); target.Wait() }()
	time.Sleep(200 * time.Millisecond) // the traps are set
	const n = 10000
	for _, c := range []struct {
		name string
		sig  unix.Signal
	}{{"SIGUSR1", unix.SIGUSR1}, {"SIGTERM", unix.SIGTERM}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var untraced, traced []time.Duration
				for r := 0; r < rounds; r++ {
					alternate(r, func() {
						untraced = append(untraced, signalStorm(b, target.Process.Pid, c.sig, n))
					}, func() {
						p := attach(b, false, 0)
						traced = append(traced, signalStorm(b, target.Process.Pid, c.sig, n))
						p.detach(b)
					})
				}
				report(b, untraced, traced, n)
			}
		})
	}
}
