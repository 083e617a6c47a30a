package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
	"github.com/bindwatch/bindwatch/internal/watch"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	if err := readBudget(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// budget, when not zero, is how long each top-level benchmark may take
// (protocol.EnvBenchBudget, set by vmtest: under TCG a round is many times
// slower than on the host, and a kernel out of time loses the benchmarks it
// did not get to). A measurement past its benchmark's budget stops after
// minRounds rounds; every one reports how many it took ("rounds").
var budget time.Duration

// minRounds is the fewest rounds a measurement takes, budget or not: a
// median and a p25–p75 still mean something.
const minRounds = 5

// budgetEnds are the top-level benchmarks' deadlines, from the first round
// of their first measurement; their sub-benchmarks share them.
var budgetEnds sync.Map

func readBudget() error {
	v := os.Getenv(protocol.EnvBenchBudget)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s=%q: want a positive Go duration such as 40s (vmtest sets it; unset, the benchmarks take all their rounds)", protocol.EnvBenchBudget, v)
	}
	budget = d
	return nil
}

// moreRounds reports whether a measurement of b that has taken r rounds
// takes another: up to limit, and past minRounds only while b's budget
// lasts.
func moreRounds(b *testing.B, r, limit int) bool {
	if r >= limit {
		return false
	}
	if budget == 0 {
		return true
	}
	top, _, _ := strings.Cut(b.Name(), "/")
	end, _ := budgetEnds.LoadOrStore(top, time.Now().Add(budget))
	return r < minRounds || time.Now().Before(end.(time.Time))
}

// rounds alternate untraced and traced phases, and which of them goes
// first, so drift (other load, CPU frequency, allocator warm-up) hits both
// alike; the median of each is reported.
const rounds = 31

// callsPerPhase is how many binds a failing phase times: ~40 ms on the
// host. Under emulation (vmtest sets a budget) a call takes ~20 times as
// long and the budget decides the rounds, so a phase is 20,000.
func callsPerPhase() int {
	if budget != 0 {
		return 20000
	}
	return 100000
}

// alternate runs untraced and traced phase r, in an order that flips
// every round.
func alternate(r int, untraced, traced func()) {
	if r%2 == 0 {
		untraced()
		traced()
	} else {
		traced()
		untraced()
	}
}

// sockaddr is a raw struct sockaddr_in for addr:port, so the timed loop
// makes the bare syscall with no Go-side conversion.
func sockaddr(addr [4]byte, port int) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr}
	sa.Port = uint16(port>>8) | uint16(port&0xff)<<8
	return sa
}

var loopback = [4]byte{127, 0, 0, 1}

func rawBind(fd int, sa *unix.RawSockaddrInet4) unix.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(sa)), unsafe.Sizeof(*sa))
	return e
}

// failingBinds times n binds of one socket to a held port: each fails with
// EADDRINUSE (a failed bind leaves the socket unbound, ready to fail again).
func failingBinds(b *testing.B, port, n int) time.Duration {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	sa := sockaddr(loopback, port)
	start := time.Now()
	for i := 0; i < n; i++ {
		if e := rawBind(fd, &sa); e != unix.EADDRINUSE {
			b.Fatalf("bind = %v, want EADDRINUSE", e)
		}
	}
	return time.Since(start)
}

// succeedingBinds times batches × n binds that succeed: fresh sockets
// (made outside the timed loops), each to its own loopback address
// (127.1.x.y) on one port, so no other program on the host can make one
// fail.
func succeedingBinds(b *testing.B, sotype, port, n, batches int) time.Duration {
	var d time.Duration
	fds := make([]int, n)
	sas := make([]unix.RawSockaddrInet4, n)
	for range batches {
		for i := range fds {
			fd, err := unix.Socket(unix.AF_INET, sotype, 0)
			if err != nil {
				b.Fatal(err)
			}
			fds[i], sas[i] = fd, sockaddr([4]byte{127, 1, byte(i >> 8), byte(i)}, port)
		}
		start := time.Now()
		for i := range fds {
			if e := rawBind(fds[i], &sas[i]); e != 0 {
				b.Fatalf("bind %v = %v", sas[i].Addr, e)
			}
		}
		d += time.Since(start)
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	return d
}

// pipeline is bindwatch attached and consuming, as `bindwatch` runs.
type pipeline struct {
	backend string
	cancel  context.CancelFunc
	done    chan error
	out     *testenv.SyncBuffer
}

// attach starts the pipeline; with port set, it counts only failures on
// that port (another process's failures on this shared host would add to
// the stop record's count).
func attach(b *testing.B, noHolders bool, port int) *pipeline {
	p := &pipeline{out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	w, _ := events.NewWriter(p.out, events.FormatJSON)
	cfg := tracer.Config{Backend: testenv.Backend(), Fold: time.Second, NoHolders: noHolders}
	if port != 0 {
		cfg.Ports = []tracer.PortRange{{Lo: uint16(port), Hi: uint16(port)}}
	}
	s, err := watch.Start(watch.Options{Tracer: cfg, Out: w})
	if err != nil {
		b.Fatalf("attach bindwatch: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.backend = cancel, s.Tracer().Backend()
	go func() { p.done <- s.Run(ctx) }()
	settle()
	return p
}

// settle lets what attaching left behind finish before a traced phase is
// timed: loading the BPF object allocates megabytes (its BTF, the kernel's
// types), whose garbage collection would otherwise run during the phase,
// and the session's first steps (seeding the holder registry) run on the
// other core. The phases measure the steady cost of a call while
// bindwatch runs; attaching is a one-off, timed by the tests' start-up.
func settle() {
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
}

// detach stops the pipeline and returns its stop record.
func (p *pipeline) detach(b *testing.B) events.Stop {
	b.Helper()
	p.cancel()
	if err := <-p.done; err != nil {
		b.Fatal(err)
	}
	var stop events.Stop
	sc := bufio.NewScanner(bytes.NewReader(p.out.Bytes()))
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"type":"stop"`)) {
			if err := json.Unmarshal(sc.Bytes(), &stop); err != nil {
				b.Fatalf("stop record does not decode: %v: %s", err, sc.Bytes())
			}
		}
	}
	return stop
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// report gives the medians per call and the median of the rounds' ratios:
// each round's two phases ran back to back under the same conditions, so
// their ratio is steadier than the ratio of two medians.
func report(b *testing.B, untraced, traced []time.Duration, n int) {
	ratios := make([]float64, len(untraced))
	for i := range untraced {
		ratios[i] = float64(traced[i]) / float64(untraced[i])
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(median(untraced).Nanoseconds())/float64(n), "untraced-ns/call")
	b.ReportMetric(float64(median(traced).Nanoseconds())/float64(n), "traced-ns/call")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
	b.ReportMetric(ratios[len(ratios)/4], "ratio-p25")
	b.ReportMetric(ratios[len(ratios)*3/4], "ratio-p75")
	b.ReportMetric(float64(len(ratios)), "rounds")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFailingBind: a storm of EADDRINUSE from one process. Target
// (issue 24): traced ≤ 1.4× untraced, with every failure counted (repeats
// are folded in the kernel into one event per second plus a count).
// "floor" times the same storm with an empty program on the backend's
// hook instead (bindFloor): the part of the ratio that is the kernel's.
func BenchmarkFailingBind(b *testing.B) {
	testenv.RequireRoot(b)
	port := testenv.FreePort(b)
	testenv.Hold(b, "udp", "127.0.0.1", port, testenv.Opts{})
	b.Run("bindwatch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var untraced, traced []time.Duration
			calls := callsPerPhase()
			for r := 0; moreRounds(b, r, rounds); r++ {
				alternate(r, func() {
					untraced = append(untraced, failingBinds(b, port, calls))
				}, func() {
					p := attach(b, false, port)
					traced = append(traced, failingBinds(b, port, calls))
					if stop := p.detach(b); stop.Failures != uint64(calls) {
						b.Fatalf("stop record %+v: want all %d failures counted (reported+folded+lost)", stop, calls)
					}
				})
			}
			report(b, untraced, traced, calls)
		}
	})
	b.Run("floor", func(b *testing.B) {
		f := newBindFloor(b, chosenBackend(b))
		for i := 0; i < b.N; i++ {
			var untraced, traced []time.Duration
			calls := callsPerPhase()
			for r := 0; moreRounds(b, r, rounds); r++ {
				alternate(r, func() {
					untraced = append(untraced, failingBinds(b, port, calls))
				}, func() {
					f.attached(b, func() { traced = append(traced, failingBinds(b, port, calls)) })
				})
			}
			report(b, untraced, traced, calls)
		}
	})
}

// BenchmarkSucceedingBind: binds that succeed. Target (issue 24): traced
// ≤ 1.05× untraced. On success the kernel programs do no more than the holder
// registry needs: a TCP bind() looks up its socket to learn the protocol,
// a UDP bind() is recorded (UDP has no listen(): bound is holding), and
// with --no-holders nothing is read at all. "floor" times UDP binds with
// an empty program on the backend's hook instead (bindFloor).
func BenchmarkSucceedingBind(b *testing.B) {
	testenv.RequireRoot(b)
	// As many sockets as the fd limit allows (Go raises the soft limit to
	// the hard one; a bare VM's init has 4096), up to 16000.
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	n := min(16000, int(lim.Cur)-256)
	// Phases of ~50,000 binds on the host: tens of milliseconds, so that a
	// timer tick or a neighbour's burst is a small part of one. Under
	// emulation (a budget) one batch: the budget decides the rounds.
	batches := max(1, 50000/n)
	if budget != 0 {
		batches = 1
	}
	for _, c := range []struct {
		name      string
		sotype    int
		noHolders bool
	}{
		{"udp", unix.SOCK_DGRAM, false},
		{"tcp", unix.SOCK_STREAM, false},
		{"udp-no-holders", unix.SOCK_DGRAM, true},
		{"floor", unix.SOCK_DGRAM, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			port := testenv.FreePort(b)
			var floor *bindFloor
			if c.name == "floor" {
				floor = newBindFloor(b, chosenBackend(b))
			}
			for i := 0; i < b.N; i++ {
				var untraced, traced []time.Duration
				for r := 0; moreRounds(b, r, rounds); r++ {
					alternate(r, func() {
						untraced = append(untraced, succeedingBinds(b, c.sotype, port, n, batches))
					}, func() {
						if floor != nil {
							floor.attached(b, func() { traced = append(traced, succeedingBinds(b, c.sotype, port, n, batches)) })
							return
						}
						p := attach(b, c.noHolders, 0)
						traced = append(traced, succeedingBinds(b, c.sotype, port, n, batches))
						p.detach(b)
					})
				}
				report(b, untraced, traced, n*batches)
			}
		})
	}
}
