package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// logTail is how much of a failed kernel's serial log the report shows.
const logTail = 40

// kernelOutcome is everything known about one kernel's run.
type kernelOutcome struct {
	series string
	kernel kernel // zero if it could not be fetched
	err    error  // fetch or boot failure
	report guestReport
	wall   time.Duration
	log    string // serial log path, empty if it never booted
}

// name is the kernel's release as the guest reported it, or as expected.
func (o kernelOutcome) name() string {
	switch {
	case o.report.release != "":
		return o.report.release
	case o.kernel.Package != "":
		return o.kernel.Release()
	}
	return o.series
}

// problems are failures of the kernel as a whole, beyond its backends'.
func (o kernelOutcome) problems() []string {
	var p []string
	if o.err != nil {
		p = append(p, o.err.Error())
	}
	for _, e := range o.report.errors {
		p = append(p, "guest: "+e)
	}
	if o.err == nil && !o.report.done {
		p = append(p, "the guest did not finish its plan")
	}
	if o.report.release != "" && o.report.release != o.kernel.Release() {
		p = append(p, fmt.Sprintf("booted %s, expected %s", o.report.release, o.kernel.Release()))
	}
	return p
}

func (o kernelOutcome) ok() bool {
	if len(o.problems()) > 0 {
		return false
	}
	for _, b := range o.report.backends {
		if !b.ok() {
			return false
		}
	}
	return true
}

// printReport writes one line per (kernel, backend), one per kernel, and a
// total; it returns whether everything passed.
func printReport(w io.Writer, outcomes []kernelOutcome, wall time.Duration) bool {
	passed, failed := 0, 0
	for _, o := range outcomes {
		for _, b := range o.report.backends {
			if b.ok() {
				passed++
			} else {
				failed++
			}
			printBackend(w, o.name(), b)
		}
		printKernel(w, o)
	}
	verdict := "PASS"
	if failed > 0 || !allOK(outcomes) {
		verdict = "FAIL"
		printFailures(w, outcomes)
	}
	fmt.Fprintf(w, "vmtest: %s %d passed, %d failed (%d kernels, %s)\n", verdict, passed, failed, len(outcomes), wall.Round(time.Second))
	return verdict == "PASS"
}

// printFailures lists, last before the verdict, every failed test and
// every problem by kernel and backend: what a CI log's tail shows.
func printFailures(w io.Writer, outcomes []kernelOutcome) {
	fmt.Fprintln(w, "vmtest: what failed:")
	for _, o := range outcomes {
		for _, p := range o.problems() {
			fmt.Fprintf(w, "vmtest:   %s: %s\n", o.name(), p)
		}
		for _, b := range o.report.backends {
			for _, p := range b.problems {
				fmt.Fprintf(w, "vmtest:   %s %s: %s\n", o.name(), b.backend, p)
			}
			for _, f := range b.failures {
				fmt.Fprintf(w, "vmtest:   %s %s %s: %s\n", o.name(), b.backend, f.binary, f.result)
				for _, l := range f.logged {
					fmt.Fprintf(w, "vmtest:       %s\n", l)
				}
			}
		}
	}
}

func allOK(outcomes []kernelOutcome) bool {
	for _, o := range outcomes {
		if !o.ok() {
			return false
		}
	}
	return true
}

func printBackend(w io.Writer, kernel string, b backendResult) {
	verdict := "PASS"
	if !b.ok() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "vmtest: %s %s %s %d passed, %d failed, %d skipped (%s)\n",
		kernel, b.backend, verdict, b.passed, b.failed, b.skipped, b.elapsed.Round(10*time.Millisecond))
	for _, p := range b.problems {
		fmt.Fprintf(w, "vmtest:     %s\n", p)
	}
	for _, line := range b.benchmarks {
		fmt.Fprintf(w, "vmtest:     %s\n", line)
	}
}

func printKernel(w io.Writer, o kernelOutcome) {
	if o.kernel.Package == "" {
		fmt.Fprintf(w, "vmtest: kernel %s: not available\n", o.series)
	} else {
		booted := "init never ran"
		if o.report.release != "" {
			booted = "booted in " + o.report.uptime.String()
		}
		fmt.Fprintf(w, "vmtest: kernel %s: %s, %s, %s in all, serial log %s\n",
			o.series, o.kernel, booted, o.wall.Round(100*time.Millisecond), relPath(o.log))
	}
	for _, p := range o.problems() {
		fmt.Fprintf(w, "vmtest:     %s\n", p)
	}
	if !o.ok() && o.log != "" {
		printTail(w, o.log)
	}
}

func printTail(w io.Writer, log string) {
	data, err := os.ReadFile(log)
	if err != nil {
		fmt.Fprintf(w, "vmtest:     (serial log unreadable: %v)\n", err)
		return
	}
	fmt.Fprintf(w, "vmtest: --- last %d lines of %s\n%s\nvmtest: ---\n", logTail, relPath(log), lastLines(string(data), logTail))
}

// relPath shortens name relative to the working directory when it is
// below it.
func relPath(name string) string {
	wd, err := os.Getwd()
	if err != nil {
		return name
	}
	if rel, err := filepath.Rel(wd, name); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return name
}
