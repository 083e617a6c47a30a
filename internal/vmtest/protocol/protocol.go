// Package protocol is the contract between the vmtest harness and its guest
// init: the plan the harness packs into the initramfs, and the marker lines
// the guest prints on the serial console around every test binary it runs.
package protocol

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PlanPath is where the plan lives inside the initramfs.
const PlanPath = "/vmtest/plan.json"

// Environment variables the guest sets for every test binary.
const (
	EnvBackend    = "BINDWATCH_TEST_BACKEND"
	EnvRequireBPF = "BINDWATCH_REQUIRE_BPF"
	// EnvBenchBudget, in bench mode, is how long each top-level benchmark
	// may take (a Go duration; its sub-benchmarks share it): internal/bench
	// takes fewer rounds once it is spent, so that a slow emulated kernel
	// still gets through every benchmark before the harness's timeout.
	EnvBenchBudget = "BINDWATCH_BENCH_BUDGET"
)

// Plan tells the guest what to run: every test in Tests once per backend in
// Backends, in that order, each with Args.
type Plan struct {
	Backends []string `json:"backends"`
	Tests    []Test   `json:"tests"`
	Args     []string `json:"args"`
	// BinaryTimeout, if set, is how long each test binary may run: the
	// guest then sends it SIGQUIT (a goroutine dump), and kills it 5 s
	// later. -test.timeout does not cover benchmarks.
	BinaryTimeout time.Duration `json:"binary_timeout,omitempty"`
	// Modules lists, by kernel release, the module files in
	// ModuleDir(release) to load before the tests, in order.
	Modules map[string][]string `json:"modules"`
}

// ModuleDir is where the modules of kernel release live in the guest.
func ModuleDir(release string) string { return "/lib/modules/" + release }

// Test is one compiled test binary inside the initramfs.
type Test struct {
	Name   string `json:"name"`   // display name, e.g. internal/tracer
	Binary string `json:"binary"` // absolute path in the guest
	Dir    string `json:"dir"`    // working directory, holds the package's testdata
	// Run, if set, is this binary's -test.run (after the plan's Args):
	// the tests of a package that can run in a bare guest.
	Run string `json:"run,omitempty"`
	// Skip, if set, is its -test.skip: tests that need what a bare guest
	// lacks (python3, iproute2's netns, ss).
	Skip string `json:"skip,omitempty"`
	// Backends, if set, are the only backends of the plan it runs under:
	// a package that traces nothing runs once per kernel, not once per
	// backend.
	Backends []string `json:"backends,omitempty"`
	// Benchmarks is how many top-level benchmarks the binary runs with
	// the plan's -test.bench, when the harness could list them (0: not
	// known); the guest does not use it.
	Benchmarks int `json:"benchmarks,omitempty"`
	// Env is added to the binary's environment (NAME=VALUE).
	Env []string `json:"env,omitempty"`
}

// RunsOn reports whether the test runs under backend.
func (t Test) RunsOn(backend string) bool {
	return len(t.Backends) == 0 || slices.Contains(t.Backends, backend)
}

// Args are the test binary's arguments: the plan's, then its own Run and
// Skip.
func (t Test) Args(plan Plan) []string {
	args := slices.Clone(plan.Args)
	if t.Run != "" {
		args = append(args, "-test.run="+t.Run)
	}
	if t.Skip != "" {
		args = append(args, "-test.skip="+t.Skip)
	}
	return args
}

// EnvBindwatch names the bindwatch binary in the guest, for the tests that
// drive the real command (cmd/bindwatch).
const EnvBindwatch = "BINDWATCH_BIN"

// BindwatchPath is where the bindwatch binary lives in the guest.
const BindwatchPath = "/vmtest/bin/bindwatch"

// prefix starts every marker; unlikely in test output, found anywhere in a
// line so that console noise in front of it does not hide it.
const prefix = "@@vmtest "

// Marker kinds.
const (
	KindKernel = "kernel" // guest is up: Release and Uptime are set
	KindBegin  = "begin"  // a test binary starts: Backend and Test are set
	KindEnd    = "end"    // it finished: also Exit and Elapsed
	KindError  = "error"  // the guest hit a problem outside any test: Text
	KindDone   = "done"   // the guest ran the whole plan and powers off
)

// Marker is one parsed marker line.
type Marker struct {
	Kind    string
	Release string
	Uptime  time.Duration
	Backend string
	Test    string
	Exit    int
	Elapsed time.Duration
	Text    string
}

// KernelLine announces the running kernel and how long it took to boot.
func KernelLine(release string, uptime time.Duration) string {
	return fmt.Sprintf("%s%s %s uptime=%s", prefix, KindKernel, release, uptime)
}

// BeginLine precedes a test binary's output.
func BeginLine(backend, test string) string {
	return fmt.Sprintf("%s%s %s %s", prefix, KindBegin, backend, test)
}

// EndLine follows a test binary's output; exit is -1 when it did not exit
// normally (signal, or it could not start).
func EndLine(backend, test string, exit int, elapsed time.Duration) string {
	return fmt.Sprintf("%s%s %s %s exit=%d elapsed=%s", prefix, KindEnd, backend, test, exit, elapsed)
}

// ErrorLine reports a guest problem outside any test binary.
func ErrorLine(text string) string {
	return fmt.Sprintf("%s%s %s", prefix, KindError, text)
}

// DoneLine is the guest's last word before powering off.
func DoneLine() string {
	return prefix + KindDone
}

// Parse finds a marker in a console line. It reports false for lines without
// one and for malformed markers.
func Parse(line string) (Marker, bool) {
	i := strings.Index(line, prefix)
	if i < 0 {
		return Marker{}, false
	}
	kind, rest, _ := strings.Cut(strings.TrimSpace(line[i+len(prefix):]), " ")
	fields := strings.Fields(rest)
	switch kind {
	case KindKernel:
		return parseKernel(fields)
	case KindBegin:
		if len(fields) != 2 {
			return Marker{}, false
		}
		return Marker{Kind: kind, Backend: fields[0], Test: fields[1]}, true
	case KindEnd:
		return parseEnd(fields)
	case KindError:
		return Marker{Kind: kind, Text: rest}, true
	case KindDone:
		return Marker{Kind: kind}, true
	}
	return Marker{}, false
}

func parseKernel(fields []string) (Marker, bool) {
	if len(fields) != 2 {
		return Marker{}, false
	}
	uptime, ok := durationField(fields[1], "uptime=")
	return Marker{Kind: KindKernel, Release: fields[0], Uptime: uptime}, ok
}

func parseEnd(fields []string) (Marker, bool) {
	if len(fields) != 4 {
		return Marker{}, false
	}
	code, found := strings.CutPrefix(fields[2], "exit=")
	exit, err := strconv.Atoi(code)
	if !found || err != nil {
		return Marker{}, false
	}
	elapsed, ok := durationField(fields[3], "elapsed=")
	return Marker{Kind: KindEnd, Backend: fields[0], Test: fields[1], Exit: exit, Elapsed: elapsed}, ok
}

func durationField(field, key string) (time.Duration, bool) {
	value, found := strings.CutPrefix(field, key)
	if !found {
		return 0, false
	}
	d, err := time.ParseDuration(value)
	return d, err == nil
}
