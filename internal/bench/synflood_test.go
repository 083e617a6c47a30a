package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// A SYN flood at a port with an open incident and nothing listening: the
// kernel refuses every attempt, and bindwatch counts each in the kernel
// (tp_btf/kfree_skb, drop reason NO_SOCKET: one hash update), never as a
// record. Both benchmarks run in a private network namespace, at a port
// below the ephemeral range (a client's own port is never it).
const floodPort = 18031

// refusedConnects times n connection attempts to port where nothing
// listens: each is refused (ECONNREFUSED), its SYN dropped for no socket.
func refusedConnects(b *testing.B, n int) time.Duration {
	sa := sockaddr(loopback, floodPort)
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
		unix.Close(fd)
		if e != unix.ECONNREFUSED {
			b.Fatalf("connect to %d, where nothing listens: %v, want ECONNREFUSED", floodPort, e)
		}
	}
	return time.Since(start)
}

// BenchmarkSYNFloodKernel: what counting costs each refused connection
// attempt, in the kernel: the counter attached watching the port
// (Counted: every SYN a hash update), watching another port (OtherPort:
// a lookup, then return), and an empty program on kfree_skb (Floor: the
// kernel's charge for any program there), each against no program, in
// 101 short alternating rounds of 500 attempts. Counted also checks that
// the kernel counted every attempt of its traced phases.
func BenchmarkSYNFloodKernel(b *testing.B) {
	testenv.RequireRoot(b)
	name, inode := testenv.NewNetns(b)
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	const n = 500
	run := func(b *testing.B, open func() (*tracer.ImpactHooks, error), counted bool) {
		h, err := open()
		if errors.Is(err, tracer.ErrNoImpactHook) {
			b.Skipf("%v: client impact is not measured here, so it costs nothing", err)
		}
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		var rounds int
		testenv.InPrivateNetns(b, ns, func() {
			hooked(b, h, n, func() time.Duration {
				rounds++
				return refusedConnects(b, n)
			})
		})
		if counted {
			// Half the phases ran with the counter attached.
			if got, want := h.Count(), uint64(rounds/2*n); got != want {
				b.Errorf("the kernel counted %d refused attempts, %d were made while it was attached", got, want)
			}
		}
	}
	key := tracer.PortKey{Netns: inode, Proto: "tcp", Port: floodPort}
	b.Run("Counted", func(b *testing.B) {
		run(b, func() (*tracer.ImpactHooks, error) { return tracer.OpenImpactHooks(key, 0) }, true)
	})
	b.Run("OtherPort", func(b *testing.B) {
		other := key
		other.Port++
		run(b, func() (*tracer.ImpactHooks, error) { return tracer.OpenImpactHooks(other, 0) }, false)
	})
	b.Run("Floor", func(b *testing.B) { run(b, tracer.OpenEmptyImpactHooks, false) })
}

// BenchmarkSYNFloodTracer: the whole tracer with an incident open on a
// port nobody listens on any more (its holder released it), and a client
// of 4 goroutines connecting in a tight loop for 3 s — tens of thousands
// of refused attempts. It reports the tracer's CPU over the flood (and
// over as long before it, the incident open and no flood), per attempt,
// and the records it wrote per attempt (the kernel counts, user
// space reads one number at the recovery); the recovery's
// refused_connections must equal the attempts the client saw refused.
func BenchmarkSYNFloodTracer(b *testing.B) {
	const window = 3 * time.Second
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		out := filepath.Join(dir, "bw.jsonl")
		pid := startTracer(b, dir, "--port", strconv.Itoa(floodPort), "--fold", "0", "--incident-quiet", "5m")
		name, inode := testenv.NewNetns(b)
		in := testenv.InNetns(name)
		old := testenv.StartHelper(b, fmt.Sprintf("serveq 127.0.0.1 %d 64", floodPort), in...)
		if l := testenv.StartHelper(b, fmt.Sprintf("trybind tcp 127.0.0.1 %d", floodPort), in...).Line; l[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
			b.Fatalf("the second bind: %q, want EADDRINUSE", l)
		}
		waitLine(b, out, `"type":"bind_failure"`, time.Now()) // the incident is open
		if l, err := old.Say("close"); err != nil || l != "closed" {
			b.Fatalf("close the holder: %q %v", l, err)
		}
		waitLine(b, out, `"type":"released"`, time.Now())
		// The tracer's CPU with the incident open and no flood: the
		// floor the flood's is read against.
		idle0, i0 := cpuTime(pid), time.Now()
		time.Sleep(window)
		idle := float64(cpuTime(pid)-idle0) / float64(time.Since(i0))
		lines0 := bytes.Count(mustRead(b, out), []byte("\n"))
		cpu0, t0 := cpuTime(pid), time.Now()
		hammer := testenv.StartHelper(b, fmt.Sprintf("hammer 127.0.0.1 %d 4", floodPort), in...)
		time.Sleep(window)
		done, err := hammer.Say("stop")
		if err != nil {
			b.Fatal(err)
		}
		elapsed, cpu := time.Since(t0), cpuTime(pid)-cpu0
		var refused, reset, alive, eof, other int
		if _, err := fmt.Sscanf(done, "done %d %d %d %d %d", &refused, &reset, &alive, &eof, &other); err != nil || refused == 0 || other != 0 {
			b.Fatalf("hammer said %q (%v): want refusals and no other error", done, err)
		}
		// Everything the tracer wrote during the flood, now that it
		// has had time to write what it read.
		time.Sleep(500 * time.Millisecond)
		records := bytes.Count(mustRead(b, out), []byte("\n")) - lines0
		testenv.StartHelper(b, fmt.Sprintf("serveq 127.0.0.1 %d 64", floodPort), in...)
		waitLine(b, out, `"type":"recovered"`, time.Now())
		var rec events.Recovered
		for _, l := range bytes.Split(mustRead(b, out), []byte("\n")) {
			var r events.Recovered
			if json.Unmarshal(l, &r) == nil && r.Type == events.TypeRecovered && r.Netns == inode {
				rec = r
			}
		}
		if c := rec.RefusedConnections; c == nil || c.Count != uint64(refused) {
			b.Errorf("recovered: refused_connections %+v, the client saw %d refused", rec.RefusedConnections, refused)
		}
		share := float64(cpu) / float64(elapsed)
		b.Logf("SYN flood: %d refused attempts in %v (%.0f/s); the tracer used %v CPU (%.2f%% of one core, %.2f%% without the flood; %.1f ns an attempt) and wrote %d records (%.6f an attempt)",
			refused, elapsed.Round(time.Millisecond), float64(refused)/elapsed.Seconds(), cpu, share*100, idle*100, float64(cpu.Nanoseconds())/float64(refused), records, float64(records)/float64(refused))
		if records > 2 {
			b.Errorf("the tracer wrote %d records during a flood of %d attempts: it should count them in the kernel", records, refused)
		}
		b.ReportMetric(float64(refused), "attempts")
		b.ReportMetric(share*100, "tracer-CPU-%")
		b.ReportMetric(idle*100, "tracer-CPU-idle-%")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(refused), "tracer-CPU-ns/attempt")
		b.ReportMetric(float64(records)/float64(refused), "records/attempt")
		b.ReportMetric(0, "ns/op")
	}
}

func mustRead(b *testing.B, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
