package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// Soak sizes: 10 million failures over 100,000 ports (50,000 TCP and
// 50,000 UDP) from 10,000 short-lived processes, each failing 1,000 times
// over 10 ports.
// BINDWATCH_SOAK_PROCS runs fewer processes, for a quick try.
var soakProcs = 10000

const (
	soakPerProc      = 1000
	soakPortsPerProc = 10
	soakPorts        = 50000 // per protocol
	soakRSSLimit     = 64 << 20
)

// BenchmarkSoak runs the real binary as it runs for months — --metrics-addr
// scraped, --output rotated by size — through 10 million failures from
// 10,000 short-lived processes over 100,000 ports (on 203.0.113.1, which
// the host does not have: EADDRNOTAVAIL, so no holders are needed).
// Targets: RSS ≤ 64 MiB and flat over the second half (≤ 10% or 4 MiB
// above its value at the half-way point), every failure accounted across
// the rotated files (reported + repeats + lost + output_lost + unread =
// failures made); CPU per failure is reported.
func BenchmarkSoak(b *testing.B) {
	bin := os.Getenv("BINDWATCH_BIN")
	if bin == "" {
		b.Skip("BINDWATCH_BIN not set: run make bench")
	}
	testenv.RequireRoot(b)
	if n, err := strconv.Atoi(os.Getenv("BINDWATCH_SOAK_PROCS")); err == nil && n > 0 {
		soakProcs = n
	}
	dir := b.TempDir()
	out := filepath.Join(dir, "soak.jsonl")
	ready := filepath.Join(dir, "ready")
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	cmd := exec.Command(bin, "--output", out, "--output-max-size", "1M", "--output-max-files", "1000",
		"--metrics-addr", metrics, "--backend", testenv.Backend(), "--ready-file", ready,
		// Only the helpers' failures (the test binary's comm), not those of
		// whatever else runs on the host.
		"--comm", filepath.Base(os.Args[0])[:min(15, len(filepath.Base(os.Args[0])))], "--errno", "EADDRNOTAVAIL")
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitForFile(b, ready, 10*time.Second, stderr.String)
	pid := cmd.Process.Pid

	var made, done atomic.Uint64
	var rss []uint64 // sampled every 500 ms, with progress
	var progress []uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(500 * time.Millisecond):
			}
			rss = append(rss, vmRSS(pid))
			progress = append(progress, done.Load())
			if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil { // scraped, as in production
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()

	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				proto := []string{"tcp", "udp"}[i%2]
				lo := 1 + (i/2*soakPortsPerProc)%soakPorts
				h := testenv.Helper(fmt.Sprintf("spread %s 203.0.113.1 %d %d %d", proto, lo, soakPortsPerProc, soakPerProc))
				o, err := h.Output()
				var n uint64
				if _, e := fmt.Sscanf(string(o), "failed %d", &n); err != nil || e != nil {
					b.Errorf("helper %d: %v %v: %s", i, err, e, o)
				}
				made.Add(n)
				done.Add(1)
			}
		}()
	}
	for i := range soakProcs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	time.Sleep(2 * time.Second) // the last repeats
	cpu := cpuTime(pid)
	if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			for _, m := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_heap_sys_bytes ", "go_memstats_sys_bytes ", "go_memstats_stack_inuse_bytes ", "process_resident_memory_bytes ", "go_goroutines "} {
				if strings.HasPrefix(line, m) {
					b.Log(line)
				}
			}
		}
	}
	close(stopSampling)
	<-sampled
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("bindwatch: %v: %s", err, stderr.String())
	}

	// Every failure accounted across the rotated files.
	var inFiles, outputLost uint64
	var stop map[string]any
	files, _ := filepath.Glob(out + "*")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				b.Fatalf("%s: a line is not a whole record: %v", f, err)
			}
			n := func(k string) uint64 { v, _ := r[k].(float64); return uint64(v) }
			switch r["type"] {
			case "bind_failure":
				inFiles++
			case "repeats", "lost":
				inFiles += n("count")
			case "output_lost":
				outputLost += n("failures")
			case "stop":
				stop = r
			}
		}
	}
	if stop == nil {
		b.Fatalf("no stop record: %s", stderr.String())
	}
	failures := uint64(stop["failures"].(float64))
	unread := uint64(stop["unread"].(float64))
	if failures != made.Load() {
		b.Errorf("stop says %d failures, the helpers made %d", failures, made.Load())
	}
	if inFiles+outputLost+unread != made.Load() {
		b.Errorf("the %d files account for %d failures (+%d output_lost, +%d unread), the helpers made %d", len(files), inFiles, outputLost, unread, made.Load())
	}

	// RSS: under the limit, flat over the second half.
	var peak, half uint64
	for i, r := range rss {
		peak = max(peak, r)
		if half == 0 && progress[i] >= uint64(soakProcs/2) {
			half = r
		}
	}
	var secondHalfPeak uint64
	for i, r := range rss {
		if progress[i] >= uint64(soakProcs/2) {
			secondHalfPeak = max(secondHalfPeak, r)
		}
	}
	if peak > soakRSSLimit {
		b.Errorf("RSS peaked at %d MiB, over %d MiB", peak>>20, soakRSSLimit>>20)
	}
	if half > 0 && secondHalfPeak > half+max(half/10, 4<<20) {
		b.Errorf("RSS grew over the second half: %d MiB at half-way, %d MiB peak after", half>>20, secondHalfPeak>>20)
	}
	b.Logf("%d failures from %d processes in %v: %.0f ns of bindwatch CPU per failure; RSS peak %d MiB (%d MiB half-way); %d files; stop %v",
		made.Load(), soakProcs, took.Round(time.Second), float64(cpu.Nanoseconds())/float64(made.Load()), peak>>20, half>>20, len(files), stop)
	b.ReportMetric(float64(made.Load())/took.Seconds(), "failures/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(made.Load()), "cpu-ns/failure")
	b.ReportMetric(float64(peak)/(1<<20), "rss-peak-MiB")
	b.ReportMetric(float64(half)/(1<<20), "rss-half-MiB")
	b.ReportMetric(float64(len(files)), "files")
	b.ReportMetric(float64(stop["lost"].(float64)), "lost")
	b.ReportMetric(0, "ns/op")
}

// vmRSS is a process's resident set size in bytes.
func vmRSS(pid int) uint64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is a process's user + system CPU time.
func cpuTime(pid int) time.Duration {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
