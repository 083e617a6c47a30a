package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
)

// backendResult is the verdict on one backend in one kernel, over all test
// binaries. Counts include subtests.
type backendResult struct {
	backend                 string
	passed, failed, skipped int
	elapsed                 time.Duration
	problems                []string
	benchmarks              []string // result lines of benchmarks (-bench)
	failures                []testFailure
}

// testFailure is one failed test of a backend's run, with the last lines
// its test binary logged before the failure, so that the end of the
// report says what failed without the serial log at hand.
type testFailure struct {
	binary string   // the plan's test name (a package)
	result string   // the "--- FAIL: TestX (1.23s)" line, trimmed
	logged []string // the last t.Log/t.Error lines before it, cut short
}

// ok is false on any failure and on any skip: the tests run with
// BINDWATCH_REQUIRE_BPF=1, so a skip means a backend silently did not run.
func (r backendResult) ok() bool {
	return r.failed == 0 && r.skipped == 0 && len(r.problems) == 0
}

// guestReport is what one boot's serial log says.
type guestReport struct {
	release  string        // uname -r, empty if the guest never got to init
	uptime   time.Duration // kernel boot time, until init ran
	done     bool          // the guest ran the whole plan
	errors   []string      // guest problems outside the tests
	backends []backendResult
}

// binaryRun is one test binary's run for one backend.
type binaryRun struct {
	passed, failed, skipped int
	panicked, timedOut      bool
	ended                   bool
	exit                    int
	elapsed                 time.Duration
	benchmarks              []string
	// started are the top-level benchmarks in the order they started
	// (-test.v prints a benchmark's bare name as it starts); the last one
	// may have been cut short.
	started []string
	// failures are the failed tests; recent holds the last lines tests
	// logged since the previous failure, for the next one.
	failures []testFailure
	recent   []string
}

// Of each failed test the report keeps the last failureLines lines logged
// before it, each cut to failureWidth bytes: tests dump whole records.
const (
	failureLines = 6
	failureWidth = 240
)

var (
	resultLine  = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): `)
	panicLine   = regexp.MustCompile(`^panic: `)
	timeoutLine = regexp.MustCompile(`^(panic: test timed out after |vmtest: \S+ ran out of its )`)
	benchLine   = regexp.MustCompile(`^Benchmark\S+\s+\d+\s+`)
	benchStart  = regexp.MustCompile(`^(Benchmark[^/\s]+)$`)
	loggedLine  = regexp.MustCompile(`^\s+\S+\.go:\d+: `)
)

// parseSerial reads the guest's serial console and judges every
// (backend, test) of the plan; a test binary that never reported fails.
func parseSerial(r io.Reader, plan protocol.Plan) (guestReport, error) {
	p := serialParser{runs: map[[2]string]*binaryRun{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		p.line(strings.TrimRight(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return p.rep, fmt.Errorf("read serial log: %w", err)
	}
	for _, backend := range plan.Backends {
		p.rep.backends = append(p.rep.backends, judge(backend, plan.Tests, p.runs))
	}
	return p.rep, nil
}

// notRun is the report of a kernel that never booted: every test of the
// plan failed for reason.
func notRun(plan protocol.Plan, reason string) guestReport {
	var rep guestReport
	for _, backend := range plan.Backends {
		res := backendResult{backend: backend}
		for _, t := range plan.Tests {
			if t.RunsOn(backend) {
				res.problems = append(res.problems, t.Name+": "+reason)
			}
		}
		rep.backends = append(rep.backends, res)
	}
	return rep
}

type serialParser struct {
	rep     guestReport
	runs    map[[2]string]*binaryRun // by (backend, test)
	current *binaryRun               // between its begin and end markers
}

func (p *serialParser) line(line string) {
	m, ok := protocol.Parse(line)
	if !ok {
		if p.current != nil {
			p.current.count(line)
		}
		return
	}
	switch m.Kind {
	case protocol.KindKernel:
		p.rep.release, p.rep.uptime = m.Release, m.Uptime
	case protocol.KindBegin:
		p.current = &binaryRun{}
		p.runs[[2]string{m.Backend, m.Test}] = p.current
	case protocol.KindEnd:
		if p.current != nil {
			p.current.ended, p.current.exit, p.current.elapsed = true, m.Exit, m.Elapsed
		}
		p.current = nil
	case protocol.KindError:
		p.rep.errors = append(p.rep.errors, m.Text)
	case protocol.KindDone:
		p.rep.done = true
	}
}

func (b *binaryRun) count(line string) {
	if m := resultLine.FindStringSubmatch(line); m != nil {
		switch m[1] {
		case "PASS":
			b.passed++
		case "FAIL":
			b.failed++
			b.failures = append(b.failures, testFailure{result: strings.TrimSpace(line), logged: b.recent})
			b.recent = nil
		case "SKIP":
			b.skipped++
		}
	}
	if loggedLine.MatchString(line) {
		logged := strings.TrimSpace(line)
		if len(logged) > failureWidth {
			logged = strings.ToValidUTF8(logged[:failureWidth], "") + "…"
		}
		if len(b.recent) == failureLines {
			b.recent = b.recent[1:]
		}
		b.recent = append(b.recent, logged)
	}
	if benchLine.MatchString(line) {
		b.benchmarks = append(b.benchmarks, strings.Join(strings.Fields(line), " "))
	}
	if m := benchStart.FindStringSubmatch(line); m != nil {
		b.started = append(b.started, m[1])
	}
	b.timedOut = b.timedOut || timeoutLine.MatchString(line)
	b.panicked = b.panicked || panicLine.MatchString(line)
}

func judge(backend string, tests []protocol.Test, runs map[[2]string]*binaryRun) backendResult {
	res := backendResult{backend: backend}
	for _, t := range tests {
		if !t.RunsOn(backend) {
			continue
		}
		run := runs[[2]string{backend, t.Name}]
		if run != nil && !run.ended && len(run.started) > 0 {
			// Cut off (the kernel's time ran out): what finished is kept.
			res.passed += run.passed
			res.failed += run.failed
			res.skipped += run.skipped
			res.benchmarks = append(res.benchmarks, run.benchmarks...)
			res.failures = append(res.failures, run.failuresOf(t.Name)...)
			res.problems = append(res.problems, t.Name+": "+run.cutShort(t.Benchmarks, "the guest was stopped"))
			continue
		}
		if run == nil || !run.ended {
			res.problems = append(res.problems, t.Name+": no result (the guest stopped before the test binary finished)")
			continue
		}
		res.passed += run.passed
		res.failed += run.failed
		res.skipped += run.skipped
		res.elapsed += run.elapsed
		res.failures = append(res.failures, run.failuresOf(t.Name)...)
		res.benchmarks = append(res.benchmarks, run.benchmarks...)
		if problem := run.problem(t.Benchmarks); problem != "" {
			res.problems = append(res.problems, t.Name+": "+problem)
		}
	}
	return res
}

// failuresOf names the run's failures by the plan's test (its package).
func (b *binaryRun) failuresOf(test string) []testFailure {
	var fs []testFailure
	for _, f := range b.failures {
		f.binary = test
		fs = append(fs, f)
	}
	return fs
}

// problem describes what is wrong with a finished run beyond its failed
// tests, or returns "".
func (b *binaryRun) problem(planned int) string {
	switch {
	case b.timedOut && len(b.started) > 0:
		return b.cutShort(planned, "its share of -timeout ran out")
	case b.timedOut:
		return "timed out (see the goroutine dump in the serial log)"
	case b.panicked:
		return "panicked"
	case b.skipped > 0:
		return fmt.Sprintf("%d skipped although %s=1", b.skipped, protocol.EnvRequireBPF)
	case b.exit != 0 && b.failed == 0:
		return fmt.Sprintf("exit %d without a failing test", b.exit)
	case b.exit == 0 && b.passed == 0 && len(b.benchmarks) == 0:
		return "no tests ran"
	}
	return ""
}

// cutShort describes a benchmark run that was stopped before it finished:
// how many of its benchmarks (of planned, when known) finished, and which
// one was cut; the results of that one's finished sub-benchmarks are kept.
func (b *binaryRun) cutShort(planned int, why string) string {
	done := len(b.started) - 1
	of := ""
	if planned > 0 {
		of = fmt.Sprintf(" of %d", planned)
	}
	return fmt.Sprintf("timed out after %d%s benchmarks (%s; %s was cut short, %d result lines kept)",
		done, of, why, b.started[done], len(b.benchmarks))
}

// benchProgress passes the guest's benchmark results on as they come, one
// line each, named by kernel and backend: a bench run on a slow or busy
// machine shows what it has measured before the report.
type benchProgress struct {
	w       io.Writer
	kernel  string
	backend string
	partial []byte // an unfinished line
}

func (p *benchProgress) Write(data []byte) (int, error) {
	p.partial = append(p.partial, data...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(p.partial[:i]), "\r")
		p.partial = p.partial[i+1:]
		if m, ok := protocol.Parse(line); ok && m.Kind == protocol.KindBegin {
			p.backend = m.Backend
		} else if benchLine.MatchString(line) {
			fmt.Fprintf(p.w, "vmtest: %s %s: %s\n", p.kernel, p.backend, strings.Join(strings.Fields(line), " "))
		}
	}
	if len(p.partial) > 64*1024 { // console noise without newlines
		p.partial = p.partial[:0]
	}
	return len(data), nil
}
