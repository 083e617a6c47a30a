package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
)

func TestPrintReport(t *testing.T) {
	log := filepath.Join(t.TempDir(), "6.12.log")
	if err := os.WriteFile(log, []byte("[ 1.0] booting\r\n[ 2.0] Kernel panic - not syncing\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pass := kernelOutcome{
		series: "6.1",
		kernel: kernel{Series: "6.1", Package: "linux-image-6.1.0-28-amd64", Version: "6.1.119-1"},
		report: guestReport{release: "6.1.0-28-amd64", uptime: 7 * time.Second, done: true, backends: []backendResult{
			{backend: "fentry", passed: 42, elapsed: 38200 * time.Millisecond},
		}},
		wall: 50 * time.Second,
		log:  "/x/6.1.log",
	}
	crashed := kernelOutcome{
		series: "6.12",
		kernel: kernel{Series: "6.12", Package: "linux-image-6.12.117+deb12-amd64", Version: "6.12.117-1~deb12u1"},
		report: guestReport{backends: []backendResult{
			{backend: "fentry", problems: []string{"internal/tracer: no result (the guest stopped before the test binary finished)"}},
		}},
		log: log,
	}
	missing := kernelOutcome{
		series: "5.10",
		err:    errors.New("fetch kernel 5.10: no package matches"),
		report: guestReport{backends: []backendResult{{backend: "fentry", problems: []string{"internal/tracer: no result"}}}},
	}

	var out strings.Builder
	if printReport(&out, []kernelOutcome{pass}, time.Minute) != true {
		t.Errorf("printReport(all passing) = false\n%s", out.String())
	}
	for _, want := range []string{
		"vmtest: 6.1.0-28-amd64 fentry PASS 42 passed, 0 failed, 0 skipped (38.2s)\n",
		"vmtest: kernel 6.1: linux-image-6.1.0-28-amd64 6.1.119-1, booted in 7s, 50s in all, serial log /x/6.1.log\n",
		"vmtest: PASS 1 passed, 0 failed (1 kernels, 1m0s)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if printReport(&out, []kernelOutcome{pass, crashed, missing}, time.Minute) != false {
		t.Errorf("printReport(with failures) = true\n%s", out.String())
	}
	for _, want := range []string{
		"vmtest: 6.12.117+deb12-amd64 fentry FAIL 0 passed, 0 failed, 0 skipped (0s)\n",
		"vmtest:     the guest did not finish its plan\n",
		"Kernel panic - not syncing",
		"vmtest: 5.10 fentry FAIL",
		"vmtest: kernel 5.10: not available\nvmtest:     fetch kernel 5.10: no package matches\n",
		"vmtest: FAIL 1 passed, 2 failed (3 kernels, 1m0s)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReleaseMismatchFails(t *testing.T) {
	o := kernelOutcome{
		kernel: kernel{Package: "linux-image-6.1.0-28-amd64"},
		report: guestReport{release: "6.18.0-1-amd64", done: true},
	}
	if o.ok() {
		t.Errorf("outcome with a different running kernel is ok: %v", o.problems())
	}
}

// The end of the report names each failed test by kernel, backend and
// package, with what it logged last: a CI log shows only its tail.
func TestReportNamesFailures(t *testing.T) {
	long := strings.Repeat("x", 2*failureWidth)
	lines := run("tracepoint", "internal/tracer", 1,
		"=== RUN   TestA",
		"    a_test.go:10: started the server",
		`    a_test.go:11: {"type":"start",`+long+`}`,
		"        continuation of a dump, not a log line",
		"    a_test.go:12: incident cause = \"leftover\", want \"already_running\"",
		"--- FAIL: TestA (1.50s)",
		"=== RUN   TestB",
		"=== RUN   TestB/v6",
		"    b_test.go:7: no record",
		"--- FAIL: TestB (0.20s)",
		"    --- FAIL: TestB/v6 (0.10s)",
		"=== RUN   TestC",
		"    c_test.go:3: fine",
		"--- PASS: TestC (0.00s)",
		"FAIL")
	lines = append(lines, run("tracepoint", "internal/watch", 0, "--- PASS: TestW (0.00s)", "PASS")...)
	lines = append(lines, protocol.DoneLine())
	rep, err := parseSerial(strings.NewReader(serialLog(lines...)), testPlan("tracepoint"))
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "6.12.log")
	if err := os.WriteFile(log, []byte(serialLog(lines...)), 0o644); err != nil {
		t.Fatal(err)
	}
	rep.release = "6.12.118+deb12-amd64"
	o := kernelOutcome{series: "6.12", report: rep, log: log,
		kernel: kernel{Series: "6.12", Package: "linux-image-6.12.118+deb12-amd64", Version: "6.12.118-1"}}
	var out strings.Builder
	if printReport(&out, []kernelOutcome{o}, time.Minute) {
		t.Fatalf("printReport = true with failed tests:\n%s", out.String())
	}
	want := "vmtest: what failed:\n" +
		"vmtest:   6.12.118+deb12-amd64 tracepoint internal/tracer: --- FAIL: TestA (1.50s)\n" +
		"vmtest:       a_test.go:10: started the server\n" +
		`vmtest:       a_test.go:11: {"type":"start",` + long[:failureWidth-len(`a_test.go:11: {"type":"start",`)] + "…\n" +
		"vmtest:       a_test.go:12: incident cause = \"leftover\", want \"already_running\"\n" +
		"vmtest:   6.12.118+deb12-amd64 tracepoint internal/tracer: --- FAIL: TestB (0.20s)\n" +
		"vmtest:       b_test.go:7: no record\n" +
		"vmtest:   6.12.118+deb12-amd64 tracepoint internal/tracer: --- FAIL: TestB/v6 (0.10s)\n" +
		"vmtest: FAIL 0 passed, 1 failed (1 kernels, 1m0s)\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("report does not end with\n%s\ngot:\n%s", want, out.String())
	}
}
