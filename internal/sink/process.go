package sink

import (
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// writeGoMetrics writes the Go runtime's series, named as Prometheus'
// Go collector names them: what dashboards for any Go daemon expect.
func writeGoMetrics(b *bytes.Buffer) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	threads, _ := runtime.ThreadCreateProfile(nil)
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	writeHeader(b, "go_gc_duration_seconds", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", kindSummary)
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		writeSample(b, "go_gc_duration_seconds", []string{"quantile"}, []string{q}, gc.PauseQuantiles[i].Seconds())
	}
	writeSample(b, "go_gc_duration_seconds_sum", nil, nil, gc.PauseTotal.Seconds())
	writeSample(b, "go_gc_duration_seconds_count", nil, nil, float64(gc.NumGC))

	writeScalar(b, kindGauge, "go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	writeHeader(b, "go_info", "Information about the Go environment.", kindGauge)
	writeSample(b, "go_info", []string{"version"}, []string{runtime.Version()}, 1)
	writeScalar(b, kindGauge, "go_memstats_alloc_bytes", "Number of heap bytes allocated and currently in use.", float64(ms.HeapAlloc))
	writeScalar(b, kindCounter, "go_memstats_alloc_bytes_total", "Total number of heap bytes allocated, even if freed.", float64(ms.TotalAlloc))
	writeScalar(b, kindGauge, "go_memstats_heap_inuse_bytes", "Number of heap bytes in spans in use.", float64(ms.HeapInuse))
	writeScalar(b, kindGauge, "go_memstats_heap_objects", "Number of currently allocated objects.", float64(ms.HeapObjects))
	writeScalar(b, kindGauge, "go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", float64(ms.LastGC)/1e9)
	writeScalar(b, kindGauge, "go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", float64(ms.NextGC))
	writeScalar(b, kindGauge, "go_memstats_sys_bytes", "Number of bytes obtained from system.", float64(ms.Sys))
	writeScalar(b, kindGauge, "go_threads", "Number of OS threads created.", float64(threads))
}

// processStart is when this process started (Unix seconds), read at the
// first scrape: not at package init, which every command pays.
var processStart = sync.OnceValue(startTime)

// writeProcessMetrics writes the process' series, named as Prometheus'
// process collector names them.
func writeProcessMetrics(b *bytes.Buffer) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		writeScalar(b, kindCounter, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpu.Seconds())
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		writeScalar(b, kindGauge, "process_max_fds", "Maximum number of open file descriptors.", float64(lim.Cur))
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		writeScalar(b, kindGauge, "process_open_fds", "Number of open file descriptors.", float64(len(fds)))
	}
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(statm)); len(f) >= 2 {
			page := float64(os.Getpagesize())
			size, _ := strconv.ParseFloat(f[0], 64)
			rss, _ := strconv.ParseFloat(f[1], 64)
			writeScalar(b, kindGauge, "process_resident_memory_bytes", "Resident memory size in bytes.", rss*page)
			writeScalar(b, kindGauge, "process_virtual_memory_bytes", "Virtual memory size in bytes.", size*page)
		}
	}
	if start := processStart(); start > 0 {
		writeScalar(b, kindGauge, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", start)
	}
}

// startTime is this process' start in Unix seconds, as /proc/self/stat
// and the boot clock give it (host.ReadStat); 0 if it cannot be read.
func startTime() float64 {
	st, err := host.ReadStat(os.Getpid())
	if err != nil {
		return 0
	}
	return float64(st.Started().UnixNano()) / 1e9
}
