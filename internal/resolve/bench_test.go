package resolve

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The busy host of the issue: ~50,000 open fds across ~270 processes.
const (
	benchProcs       = 270
	benchFDsPerProc  = 185
	benchToolRepeats = 3
	// bindwatch's own one-shot figures (~15–25 ms a run, where the median
	// of 3 moved by 6 ms between runs) take the median of more.
	benchSelfRepeats = 21
)

// benchFleet is the crowd of fd-holding processes BenchmarkWho measures
// against, started once per test binary (the benchmark function runs
// several times) and stopped by TestMain.
var benchFleet struct {
	once    sync.Once
	err     error
	helpers []*testenv.HelperProc
	port    int
	holder  int // pid holding the port
}

func startBenchFleet(b *testing.B) {
	f := &benchFleet
	f.once.Do(func() {
		start := func(job string) (*testenv.HelperProc, error) {
			h, err := testenv.SpawnHelper(job)
			if err == nil {
				f.helpers = append(f.helpers, h)
			}
			return h, err
		}
		f.port = testenv.FreePort(b)
		h, err := start(fmt.Sprintf("hold tcp 0.0.0.0 %d", f.port))
		if f.err = err; err != nil {
			return
		}
		f.holder = h.PID
		for range benchProcs - 1 {
			if _, f.err = start(fmt.Sprintf("fdhog %d", benchFDsPerProc)); f.err != nil {
				return
			}
		}
	})
	if f.err != nil {
		b.Fatalf("start the fd-holding processes: %v", f.err)
	}
}

func stopBenchFleet() {
	for _, h := range benchFleet.helpers {
		h.Stop()
	}
}

// countOpenFDs counts every open fd on the host, as the tools must scan them.
func countOpenFDs() (fds, procs int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if fd, err := os.ReadDir("/proc/" + e.Name() + "/fd"); err == nil {
			fds += len(fd)
			procs++
		}
	}
	return fds, procs
}

// timeCommand runs argv repeats times and reports the median wall
// time as name-ms and the median CPU time (user+system, what the run costs
// when it does not wait for a busy CPU) as name-cpu-ms. A tool that is not
// installed is not reported; one whose output does not name the holder's pid
// answered wrongly and fails the benchmark.
func timeCommand(b *testing.B, name string, holder, repeats int, argv ...string) {
	if _, err := exec.LookPath(argv[0]); err != nil {
		b.Logf("%s is not installed: not timed", argv[0])
		return
	}
	var wall, cpu []time.Duration
	for range repeats {
		cmd := exec.Command(argv[0], argv[1:]...)
		start := time.Now()
		out, _ := cmd.CombinedOutput()
		wall = append(wall, time.Since(start))
		cpu = append(cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		if !strings.Contains(string(out), strconv.Itoa(holder)) {
			b.Fatalf("%s did not name the holder %d: %s", strings.Join(argv, " "), holder, out)
		}
	}
	b.ReportMetric(medianOf(wall), name+"-ms")
	b.ReportMetric(medianOf(cpu), name+"-cpu-ms")
}

func medianOf(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)/2].Microseconds()) / 1000
}

// smallHostProcs is the small host of issue 24: most hosts run about a
// hundred processes.
const smallHostProcs = 100

// BenchmarkWhoSmallHost times the one-shot `bindwatch who PORT` (with
// BINDWATCH_BIN; where the fds are few it scans /proc rather than load the
// BPF iterators) against ss -ltnp, fuser and lsof, 10 runs each
// interleaved, on a host of ~100 processes: the host's own plus idle
// helpers. It must run before BenchmarkWho, which starts ~270 fd-heavy
// processes (source order does it). Target: who ≤ 1.2× ss -ltnp.
func BenchmarkWhoSmallHost(b *testing.B) {
	testenv.RequireRoot(b)
	if len(benchFleet.helpers) > 0 {
		b.Fatal("BenchmarkWho's 270 processes are running: run BenchmarkWhoSmallHost on its own or first")
	}
	bin := os.Getenv("BINDWATCH_BIN")
	if bin == "" {
		b.Skip("BINDWATCH_BIN not set: run make bench")
	}
	port := testenv.FreePort(b)
	holder := testenv.StartHelper(b, fmt.Sprintf("hold tcp 0.0.0.0 %d", port))
	for _, procs := countOpenFDs(); procs < smallHostProcs; procs++ {
		testenv.StartHelper(b, "fdhog 4")
	}
	fds, procs := countOpenFDs()
	for b.Loop() {
	}
	b.ReportMetric(float64(fds), "fds")
	b.ReportMetric(float64(procs), "procs")
	// Interleaved, one run of each per round, so a neighbour's burst
	// hits them alike.
	const runs = 10
	tools := []struct {
		name string
		argv []string
	}{
		{"who", []string{bin, "who", fmt.Sprintf("%d/tcp", port), "--format", "json"}},
		{"ss", []string{"ss", "-ltnp"}},
		{"fuser", []string{"fuser", fmt.Sprintf("%d/tcp", port)}},
		{"lsof", []string{"lsof", "-nP", "-i", fmt.Sprintf(":%d", port)}},
	}
	wall := make([][]time.Duration, len(tools))
	for range runs {
		for i, tool := range tools {
			if _, err := exec.LookPath(tool.argv[0]); err != nil {
				continue
			}
			cmd := exec.Command(tool.argv[0], tool.argv[1:]...)
			start := time.Now()
			out, _ := cmd.CombinedOutput()
			wall[i] = append(wall[i], time.Since(start))
			if !strings.Contains(string(out), strconv.Itoa(holder.PID)) {
				b.Fatalf("%s did not name the holder %d: %s", strings.Join(tool.argv, " "), holder.PID, out)
			}
		}
	}
	for i, tool := range tools {
		if len(wall[i]) == 0 {
			b.Logf("%s is not installed: not timed", tool.argv[0])
			continue
		}
		b.ReportMetric(medianOf(wall[i]), tool.name+"-ms")
		b.ReportMetric(float64(wall[i][0].Microseconds())/1000, tool.name+"-min-ms")
		b.ReportMetric(float64(wall[i][len(wall[i])-1].Microseconds())/1000, tool.name+"-max-ms")
	}
	if len(wall[1]) > 0 {
		b.ReportMetric(medianOf(wall[0])/medianOf(wall[1]), "who/ss")
	}
}

// BenchmarkWho measures `who PORT` on a host with ~50,000 open fds across
// ~270 processes, and in the same run the tools people use for it: ns/op
// and who-ms are one lookup with the resolver ready (as in a running
// bindwatch); who-cold-ms includes loading the BPF iterator (as one
// `bindwatch who` run, less process start); cli-ms is the real binary when
// BINDWATCH_BIN names it, and cli-shared-ms the same with a tracer running
// whose iterators it opens (iterload.OpenShared); proc-scan-ms is the fallback without BPF; each
// command also gets its CPU time (-cpu-ms), which a busy machine does not
// inflate.
func BenchmarkWho(b *testing.B) {
	testenv.RequireRoot(b)
	startBenchFleet(b)
	port, holder := uint16(benchFleet.port), benchFleet.holder

	check := func(rep *PortReport, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Holders) != 1 || !slices.Equal(holderPIDs(rep.Holders[0]), []int{holder}) {
			b.Fatalf("who %d = %+v, want pid %d", port, rep.Holders, holder)
		}
	}
	r, err := New(Options{CacheTTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if m, why := r.OwnerLookup(); m != OwnersBPFIter {
		b.Fatalf("BPF iterator unavailable: %v", why)
	}
	check(r.Who(r.OwnNetns(), "tcp", port))

	for b.Loop() {
		check(r.Who(r.OwnNetns(), "tcp", port))
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "who-ms")
	fds, procs := countOpenFDs()
	b.ReportMetric(float64(fds), "fds")
	b.ReportMetric(float64(procs), "procs")

	cold := medianMS(func() {
		c, err := New(Options{CacheTTL: -1})
		if err != nil {
			b.Fatal(err)
		}
		check(c.Who(c.OwnNetns(), "tcp", port))
		c.Close()
	})
	b.ReportMetric(cold, "who-cold-ms")
	scan, err := New(Options{CacheTTL: -1, NoBPF: true})
	if err != nil {
		b.Fatal(err)
	}
	defer scan.Close()
	b.ReportMetric(medianMS(func() { check(scan.Who(scan.OwnNetns(), "tcp", port)) }), "proc-scan-ms")

	if bin := os.Getenv("BINDWATCH_BIN"); bin != "" {
		timeCommand(b, "cli", holder, benchSelfRepeats, bin, "who", fmt.Sprintf("%d/tcp", port), "--format", "json")
		// With a tracer running, who opens the iterators it shares.
		stop := startSharingTracer(b, bin)
		timeCommand(b, "cli-shared", holder, benchSelfRepeats, bin, "who", fmt.Sprintf("%d/tcp", port), "--format", "json")
		stop()
	}
	timeCommand(b, "ss", holder, benchToolRepeats, "ss", "-tlnp", fmt.Sprintf("sport = :%d", port))
	timeCommand(b, "fuser", holder, benchToolRepeats, "fuser", fmt.Sprintf("%d/tcp", port))
	timeCommand(b, "lsof", holder, benchToolRepeats, "lsof", "-nP", "-i", fmt.Sprintf(":%d", port))
}

// startSharingTracer starts `bindwatch` (bin), which shares its BPF
// iterators in /sys/fs/bpf/bindwatch, and returns once they are there;
// stop stops it.
func startSharingTracer(b *testing.B, bin string) (stop func()) {
	testenv.BPFFS(b)
	dir := b.TempDir()
	ready := dir + "/ready"
	cmd := exec.Command(bin, "--port", "1", "--format", "json", "--output", dir+"/out.json", "--ready-file", ready)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	testenv.WaitForReady(b, ready, cmd.Process, stderr.String)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if shared, _ := filepath.Glob("/sys/fs/bpf/bindwatch/iters-*/run"); len(shared) > 0 {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("the tracer did not share its iterators within 10s: %s", stderr.String())
		}
	}
}

// medianMS runs fn benchSelfRepeats times and returns the median in ms.
func medianMS(fn func()) float64 {
	var runs []time.Duration
	for range benchSelfRepeats {
		start := time.Now()
		fn()
		runs = append(runs, time.Since(start))
	}
	return medianOf(runs)
}

// BenchmarkResolveFailure measures what a running bindwatch adds to each
// live event: resolving a failure's holders (sock_diag, the owner
// iterator, /proc details, diagnosis) with no cache, among the same ~50,000
// open fds. Target: the holder is on the event within 20 ms at p99 (the
// ring buffer hands the event over in microseconds).
func BenchmarkResolveFailure(b *testing.B) {
	testenv.RequireRoot(b)
	startBenchFleet(b)
	r, err := New(Options{CacheTTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if m, why := r.OwnerLookup(); m != OwnersBPFIter {
		b.Fatalf("BPF iterator unavailable: %v", why)
	}
	own := r.OwnNetns().Inode
	var lat []time.Duration
	for b.Loop() {
		for range 200 {
			f := events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0",
				Port: uint16(benchFleet.port), Process: events.Process{PID: os.Getpid(), Netns: own}}
			start := time.Now()
			if err := r.Resolve(&f); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			if len(f.Holders) != 1 || !slices.Equal(holderPIDs(f.Holders[0]), []int{benchFleet.holder}) {
				b.Fatalf("holders %+v, want pid %d", f.Holders, benchFleet.holder)
			}
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
