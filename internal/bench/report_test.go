package bench

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// writeLog writes a log of one incident on port 8080: pids failing
// processes, each failing once against the same holder, then signals
// SIGHUPs to the holder from one user's flood.
func writeLog(b *testing.B, path string, pids, signals int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	put := func(rec any) {
		line, err := events.MarshalJSON(rec)
		if err != nil {
			b.Fatal(err)
		}
		w.Write(append(line, '\n'))
	}
	put(&events.Start{Header: events.Header{Type: events.TypeStart, Version: events.Version, Time: t0, Host: "h"}, Backend: "tracepoint"})
	holder := events.Process{PID: 7, PPID: 1, Comm: "old", Cmdline: []string{"old", "--port", "8080"}}
	at := t0
	for i := range pids {
		at = at.Add(time.Millisecond)
		put(&events.Failure{Header: events.Header{Type: events.TypeFailure, Version: events.Version, Time: at, Host: "h"}, Syscall: "bind",
			Errno: "EADDRINUSE", ErrnoCode: 98, Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: 8080,
			Process: events.Process{PID: 100000 + i, PPID: 1, Comm: "srv", Cmdline: []string{"srv", "--port", "8080"}, Netns: 1},
			Holders: []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080, Inode: 5, Processes: []events.Process{holder}}}})
	}
	for range signals {
		at = at.Add(50 * time.Microsecond)
		put(&events.Signal{Header: events.Header{Type: events.TypeSignal, Version: events.Version, Time: at, Host: "h"}, Signal: "SIGHUP",
			Sender: events.Process{PID: 9, PPID: 1, UID: 65534, Comm: "flood"}, Target: holder, Result: "delivered",
			Proto: "tcp", Netns: 1, Port: 8080})
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// reportTime runs `bindwatch report --format json --html` on path, best
// of three, and returns the time and the page's size.
func reportTime(b *testing.B, bin, path string) (time.Duration, int64) {
	best := time.Duration(1 << 62)
	page := path + ".html"
	for range 3 {
		start := time.Now()
		cmd := exec.Command(bin, "report", "--format", "json", "--html", page, path)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("report %s: %v\n%.2000s", path, err, out)
		}
		best = min(best, time.Since(start))
	}
	st, err := os.Stat(page)
	if err != nil {
		b.Fatal(err)
	}
	return best, st.Size()
}

// BenchmarkReport: bindwatch report (JSON and the HTML page) on one
// incident with 10,000 and then 40,000 failing pids — target: at most 6×
// the time, near-linear (issue 19 measured it quadratic) — and on one with
// 200,000 SIGHUPs from a user's flood: the page stays small, the signals
// folded.
func BenchmarkReport(b *testing.B) {
	bin := os.Getenv("BINDWATCH_BIN")
	if bin == "" {
		b.Skip("BINDWATCH_BIN not set: run make bench")
	}
	dir := b.TempDir()
	small, large, flood := filepath.Join(dir, "10k.jsonl"), filepath.Join(dir, "40k.jsonl"), filepath.Join(dir, "signals.jsonl")
	writeLog(b, small, 10000, 0)
	writeLog(b, large, 40000, 0)
	writeLog(b, flood, 10, 200000)
	for i := 0; i < b.N; i++ {
		t10, _ := reportTime(b, bin, small)
		t40, _ := reportTime(b, bin, large)
		tSig, page := reportTime(b, bin, flood)
		ratio := float64(t40) / float64(t10)
		if ratio > 6 {
			b.Errorf("40,000 failing pids took %v, %.1f× the %v of 10,000: more than 6×", t40, ratio, t10)
		}
		if page > 1<<20 {
			b.Errorf("the page of 200,000 signals is %d KiB: they are not folded", page>>10)
		}
		b.Logf("report: 10k pids %v, 40k pids %v (%.1f×); 200k signals %v, page %d KiB", t10.Round(time.Millisecond), t40.Round(time.Millisecond), ratio, tSig.Round(time.Millisecond), page>>10)
		b.ReportMetric(t10.Seconds(), "10k-pids-s")
		b.ReportMetric(t40.Seconds(), "40k-pids-s")
		b.ReportMetric(ratio, "40k/10k")
		b.ReportMetric(float64(page)/1024, "200k-signals-page-KiB")
		b.ReportMetric(0, "ns/op")
	}
}
