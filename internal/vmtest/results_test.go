package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
)

func testPlan(backends ...string) protocol.Plan {
	return protocol.Plan{Backends: backends, Tests: []protocol.Test{{Name: "internal/tracer"}, {Name: "internal/watch"}}}
}

// serialLog joins lines with the CRLF a serial console produces.
func serialLog(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n"
}

func run(backend, test string, exit int, output ...string) []string {
	lines := append([]string{protocol.BeginLine(backend, test)}, output...)
	return append(lines, protocol.EndLine(backend, test, exit, 1500*time.Millisecond))
}

func TestParseSerialAllPass(t *testing.T) {
	var lines []string
	lines = append(lines, "[    0.000000] Linux version 6.1.0-28-amd64", protocol.KernelLine("6.1.0-28-amd64", 1800*time.Millisecond))
	for _, b := range []string{"fentry", "kprobe"} {
		lines = append(lines, run(b, "internal/tracer", 0,
			"=== RUN   TestA", "--- PASS: TestA (0.01s)",
			"=== RUN   TestB", "=== RUN   TestB/v6", "--- PASS: TestB (0.00s)", "    --- PASS: TestB/v6 (0.00s)",
			"[   12.345678] some kernel message", "PASS")...)
		lines = append(lines, run(b, "internal/watch", 0, "--- PASS: TestC (0.01s)", "PASS")...)
	}
	lines = append(lines, protocol.DoneLine(), "[   20.000000] reboot: Power down")

	rep, err := parseSerial(strings.NewReader(serialLog(lines...)), testPlan("fentry", "kprobe"))
	if err != nil {
		t.Fatal(err)
	}
	want := guestReport{
		release: "6.1.0-28-amd64", uptime: 1800 * time.Millisecond, done: true,
		backends: []backendResult{
			{backend: "fentry", passed: 4, elapsed: 3 * time.Second},
			{backend: "kprobe", passed: 4, elapsed: 3 * time.Second},
		},
	}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("parseSerial = %+v\nwant %+v", rep, want)
	}
	for _, b := range rep.backends {
		if !b.ok() {
			t.Errorf("backend %s not ok: %+v", b.backend, b)
		}
	}
}

func TestParseSerialProblems(t *testing.T) {
	tests := []struct {
		name    string
		output  []string // of internal/tracer; internal/watch passes
		exit    int
		ended   bool
		failed  int
		skipped int
		problem string
	}{
		{name: "failure", exit: 1, ended: true, failed: 2,
			output: []string{"--- FAIL: TestA (0.01s)", "    --- FAIL: TestA/sub (0.00s)", "--- PASS: TestB (0.00s)", "FAIL"}},
		{name: "skip", exit: 0, ended: true, skipped: 1, problem: "internal/tracer: 1 skipped although BINDWATCH_REQUIRE_BPF=1",
			output: []string{"--- SKIP: TestA (0.00s)", "--- PASS: TestB (0.00s)", "PASS"}},
		{name: "panic", exit: 2, ended: true, problem: "internal/tracer: panicked",
			output: []string{"=== RUN   TestA", "panic: runtime error: index out of range [recovered]", "goroutine 7 [running]:"}},
		{name: "timeout", exit: 2, ended: true, problem: "internal/tracer: timed out (see the goroutine dump in the serial log)",
			output: []string{"=== RUN   TestA", "panic: test timed out after 1m20s"}},
		{name: "bad exit", exit: 1, ended: true, problem: "internal/tracer: exit 1 without a failing test",
			output: []string{"--- PASS: TestA (0.00s)", "some init error"}},
		{name: "no tests", exit: 0, ended: true, problem: "internal/tracer: no tests ran",
			output: []string{"testing: warning: no tests to run", "PASS"}},
		{name: "no end", ended: false, problem: "internal/tracer: no result (the guest stopped before the test binary finished)",
			output: []string{"=== RUN   TestA", "[   30.1] Kernel panic - not syncing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := run("fentry", "internal/watch", 0, "--- PASS: TestC (0.00s)")
			lines = append(lines, protocol.BeginLine("fentry", "internal/tracer"))
			lines = append(lines, tt.output...)
			if tt.ended {
				lines = append(lines, protocol.EndLine("fentry", "internal/tracer", tt.exit, time.Second), protocol.DoneLine())
			}
			rep, err := parseSerial(strings.NewReader(serialLog(lines...)), testPlan("fentry"))
			if err != nil {
				t.Fatal(err)
			}
			got := rep.backends[0]
			if got.ok() {
				t.Fatalf("backend ok, want a failure: %+v", got)
			}
			if got.failed != tt.failed || got.skipped != tt.skipped {
				t.Errorf("failed, skipped = %d, %d; want %d, %d", got.failed, got.skipped, tt.failed, tt.skipped)
			}
			var wantProblems []string
			if tt.problem != "" {
				wantProblems = []string{tt.problem}
			}
			if !reflect.DeepEqual(got.problems, wantProblems) {
				t.Errorf("problems = %q, want %q", got.problems, wantProblems)
			}
		})
	}
}

func TestParseSerialEmptyLog(t *testing.T) {
	rep, err := parseSerial(strings.NewReader(""), testPlan("fentry", "kprobe", "tracepoint"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.done || rep.release != "" || len(rep.backends) != 3 {
		t.Fatalf("report of an empty log = %+v, want 3 backends, nothing done", rep)
	}
	for _, b := range rep.backends {
		if b.ok() || len(b.problems) != 2 {
			t.Errorf("backend %s = %+v, want two missing tests", b.backend, b)
		}
	}
}

func TestParseSerialGuestError(t *testing.T) {
	log := serialLog(protocol.ErrorLine("mount cgroup2 on /sys/fs/cgroup: no such device"), "[ 1.0] reboot: Power down")
	rep, err := parseSerial(strings.NewReader(log), testPlan("fentry"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mount cgroup2 on /sys/fs/cgroup: no such device"}; !reflect.DeepEqual(rep.errors, want) {
		t.Errorf("errors = %q, want %q", rep.errors, want)
	}
}

// Benchmark runs report their result lines and count as having run.
func TestBenchmarkLines(t *testing.T) {
	var b binaryRun
	for _, l := range []string{
		"goos: linux",
		"BenchmarkFailingBind-2   \t       1\t         1.898 ratio\t       436.6 traced-ns/call",
		"BenchmarkFoo",
		"PASS",
	} {
		b.count(l)
	}
	b.ended = true
	if len(b.benchmarks) != 1 || b.benchmarks[0] != "BenchmarkFailingBind-2 1 1.898 ratio 436.6 traced-ns/call" {
		t.Errorf("benchmarks = %q", b.benchmarks)
	}
	if p := b.problem(0); p != "" {
		t.Errorf("a benchmark-only run is reported as %q", p)
	}
}

// The same with every binary held to its share of -timeout (a real log:
// the guest stopped each backend's binary with SIGQUIT when its share ran
// out, and both backends report what they finished).
func TestParseSerialBenchShares(t *testing.T) {
	f, err := os.Open("testdata/bench/shares-6.12.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plan := protocol.Plan{Backends: []string{"fentry", "tracepoint"}, Tests: []protocol.Test{{Name: "internal/bench", Benchmarks: 11}}}
	rep, err := parseSerial(f, plan)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.done {
		t.Error("the guest's plan is not done")
	}
	want := map[string]string{
		"fentry":     "internal/bench: timed out after 5 of 11 benchmarks (its share of -timeout ran out; BenchmarkConnectChurn was cut short, 5 result lines kept)",
		"tracepoint": "internal/bench: timed out after 8 of 11 benchmarks (its share of -timeout ran out; BenchmarkReport was cut short, 10 result lines kept)",
	}
	for _, b := range rep.backends {
		if len(b.problems) != 1 || b.problems[0] != want[b.backend] || b.ok() {
			t.Errorf("%s: problems %q, want %q", b.backend, b.problems, want[b.backend])
		}
	}
	if n := len(rep.backends[1].benchmarks); n != 10 {
		t.Errorf("tracepoint: %d results, want 10", n)
	}
}
