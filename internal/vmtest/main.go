// Command vmtest boots Debian kernels under qemu and runs bindwatch's
// integration tests in each, once per backend.
//
// It compiles the tests of -pkgs as static binaries, packs them with a
// static busybox and a small Go init into an initramfs, fetches each kernel
// of -kernels with apt-get download into a git-ignored cache on first use,
// and boots each kernel once under qemu's TCG. The guest runs every test
// binary once per backend of -backends with BINDWATCH_TEST_BACKEND set and
// BINDWATCH_REQUIRE_BPF=1. vmtest prints one line per (kernel, backend) and
// exits non-zero if anything failed, was skipped or did not run.
//
// Usage:
//
//	go run ./internal/vmtest [-pkgs ./internal/tracer] [-kernels 5.10,6.1,6.12]
//
// Run as root on Debian: missing qemu and busybox are installed with apt-get.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
)

type options struct {
	pkgs     []string // per backend; "PKG=REGEXP" runs only those tests
	oncePkgs []string // once per kernel, under the first backend
	backends []string
	kernels  []string
	run      string
	bench    string
	timeout  time.Duration
	parallel int
	cache    string
	refresh  bool
	arch     guestArch
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("vmtest", flag.ContinueOnError)
	pkgs := fs.String("pkgs", "./internal/tracer", "comma-separated packages whose tests run in the guests, once per backend; PKG=REGEXP runs only the tests REGEXP matches (-test.run), PKG!REGEXP all but those (-test.skip)")
	oncePkgs := fs.String("once-pkgs", "", "like -pkgs, for packages that trace nothing: their tests run once per kernel (under the first backend), not once per backend")
	backends := fs.String("backends", "", "comma-separated backends to test in every kernel; each must work there (default: the architecture's, fentry,kprobe,tracepoint on amd64)")
	arch := fs.String("arch", hostArch, "architecture of the guests: amd64, or arm64 (emulated, slower; default -kernels 6.1)")
	kernels := fs.String("kernels", "5.10,6.1,6.12", "comma-separated kernel series to boot")
	var o options
	fs.StringVar(&o.run, "run", "", "only run tests matching this regexp (passed as -test.run)")
	fs.StringVar(&o.bench, "bench", "", "run the benchmarks matching this regexp once each (-test.bench, -test.benchtime=1x) instead of the tests, and print their results per kernel and backend")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Minute, "per-kernel limit, boot and every backend included; test binaries get 7/8 of it as -test.timeout")
	fs.IntVar(&o.parallel, "parallel", 2, "kernels booted at the same time (one vCPU and 1G of RAM each)")
	fs.StringVar(&o.cache, "cache", "", "cache for kernels, build output and serial logs (default <module>/.cache/vmtest)")
	fs.BoolVar(&o.refresh, "refresh", false, "look for newer kernel packages even when one is cached")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (all options are flags)", fs.Args())
	}
	var err error
	if o.arch, err = lookupArch(*arch); err != nil {
		return o, err
	}
	if *backends == "" {
		*backends = o.arch.backends
	}
	if o.arch.name != hostArch && !setFlags(fs)["kernels"] {
		*kernels = "6.1"
	}
	o.pkgs, o.oncePkgs, o.backends, o.kernels = splitList(*pkgs), splitList(*oncePkgs), splitList(*backends), splitList(*kernels)
	if len(o.pkgs) == 0 || len(o.backends) == 0 || len(o.kernels) == 0 || o.parallel < 1 {
		return o, errors.New("-pkgs, -backends and -kernels must not be empty, -parallel must be at least 1")
	}
	return o, nil
}

// setFlags names the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	outcomes, err := runMatrix(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(2)
	}
	if !printReport(os.Stdout, outcomes, time.Since(start)) {
		os.Exit(1)
	}
}

// runMatrix prepares the host, the initramfs and the kernels, then boots
// the kernels. Errors it returns are setup errors; kernel failures, fetch
// failures included, are in the outcomes.
func runMatrix(ctx context.Context, o options) ([]kernelOutcome, error) {
	specs, err := lookupKernelSpecs(o.kernels, o.arch)
	if err != nil {
		return nil, err
	}
	mod, err := currentModule(ctx)
	if err != nil {
		return nil, err
	}
	if o.cache == "" {
		o.cache = filepath.Join(mod.dir, ".cache", "vmtest")
	}
	if o.arch.name != hostArch { // its own kernels, apt indexes, builds and logs
		o.cache = filepath.Join(o.cache, o.arch.name)
	}
	busybox, err := ensureTools(ctx, o.arch, os.Stderr)
	if err != nil {
		return nil, err
	}
	f, err := newFetcher(o.cache, o.arch, os.Stderr)
	if err != nil {
		return nil, err
	}
	guestBusybox, err := f.guestBusybox(ctx, busybox)
	if err != nil {
		return nil, err
	}
	ramfs := initramfs{busybox: guestBusybox, applets: busybox, docs: filepath.Join(mod.dir, "docs"), bindwatch: filepath.Join(o.cache, "build", "bindwatch")}
	if ramfs.pkgs, ramfs.init, err = buildGuest(ctx, o, mod); err != nil {
		return nil, err
	}
	outcomes := fetchKernels(ctx, o, f, specs)
	ramfs.kernels = fetched(outcomes)
	ramfs.plan = newPlan(ramfs.pkgs, ramfs.kernels, o.backends, testArgs(o))
	if o.bench != "" {
		planBenchmarks(ctx, o, &ramfs.plan, ramfs.pkgs)
	}
	initrd := filepath.Join(o.cache, "build", "initramfs.cpio")
	if err := ramfs.write(ctx, initrd); err != nil {
		return nil, err
	}
	runKernels(ctx, o, outcomes, initrd, ramfs.plan)
	return outcomes, nil
}

func lookupKernelSpecs(series []string, arch guestArch) ([]kernelSpec, error) {
	var specs []kernelSpec
	for _, s := range series {
		spec, err := lookupKernelSpec(s, arch)
		if err != nil {
			return nil, fmt.Errorf("-kernels: %w", err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// buildGuest compiles the test binaries and the guest init into the
// cache's build directory.
func buildGuest(ctx context.Context, o options, mod module) ([]testPackage, string, error) {
	dir := filepath.Join(o.cache, "build")
	for _, d := range []string{dir, filepath.Join(o.cache, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, "", err
		}
	}
	pkgs, err := buildTests(ctx, mod, o.pkgs, false, dir, o.arch.name)
	if err != nil {
		return nil, "", err
	}
	once, err := buildTests(ctx, mod, o.oncePkgs, true, dir, o.arch.name)
	if err != nil {
		return nil, "", err
	}
	pkgs = append(pkgs, once...)
	if err := buildBindwatch(ctx, mod, dir, o.arch.name); err != nil {
		return nil, "", err
	}
	init, err := buildGuestInit(ctx, dir, o.arch.name)
	return pkgs, init, err
}

// testArgs makes a test binary that hangs panic with a goroutine dump
// before qemu is killed: -test.timeout is 7/8 of the per-kernel timeout.
func testArgs(o options) []string {
	args := []string{"-test.v", "-test.count=1", "-test.timeout=" + (o.timeout - o.timeout/8).String()}
	if o.run != "" {
		args = append(args, "-test.run="+o.run)
	} else if o.bench != "" {
		args = append(args, "-test.run=^$")
	}
	if o.bench != "" {
		args = append(args, "-test.bench="+o.bench, "-test.benchtime=1x")
	}
	return args
}

// planBenchmarks sizes a bench run to the per-kernel timeout. Every test
// binary gets an equal share of 7/8 of it (the rest is for booting), after
// which the guest stops it (plan.BinaryTimeout: -test.timeout does not
// cover benchmarks), so that one slow backend cannot take the others'
// time; the report keeps what it finished. Each
// top-level benchmark gets an equal share of 3/4 of that as its budget
// (protocol.EnvBenchBudget), when the binaries run on this machine to be
// counted; otherwise the binary's whole share.
func planBenchmarks(ctx context.Context, o options, plan *protocol.Plan, pkgs []testPackage) {
	runs := 0
	for _, b := range plan.Backends {
		for _, t := range plan.Tests {
			if t.RunsOn(b) {
				runs++
			}
		}
	}
	perBinary := (o.timeout - o.timeout/8) / time.Duration(max(runs, 1))
	plan.BinaryTimeout = perBinary.Round(time.Second)
	top, _, _ := strings.Cut(o.bench, "/")
	for i := range plan.Tests {
		t := &plan.Tests[i]
		if o.arch.name == hostArch {
			out, err := exec.CommandContext(ctx, pkgs[i].binary, "-test.list", top).Output()
			if err == nil {
				for _, name := range strings.Fields(string(out)) {
					if strings.HasPrefix(name, "Benchmark") {
						t.Benchmarks++
					}
				}
			}
		}
		budget := (perBinary * 3 / 4 / time.Duration(max(t.Benchmarks, 1))).Round(time.Second)
		t.Env = append(t.Env, protocol.EnvBenchBudget+"="+budget.String())
		fmt.Fprintf(os.Stderr, "vmtest: %s: %d benchmarks, %s each, %s in all per backend (-timeout %s for %d binaries)\n",
			t.Name, t.Benchmarks, budget, perBinary.Round(time.Second), o.timeout, runs)
	}
}

// fetchKernels fetches the kernels one after the other (they share apt
// indexes). A kernel that cannot be fetched is a failed outcome.
func fetchKernels(ctx context.Context, o options, f *fetcher, specs []kernelSpec) []kernelOutcome {
	outcomes := make([]kernelOutcome, len(specs))
	for i, spec := range specs {
		out := &outcomes[i]
		out.series = spec.series
		out.kernel, out.err = f.fetch(ctx, spec, o.refresh)
		if out.err != nil {
			out.err = fmt.Errorf("fetch kernel %s: %w", spec.series, out.err)
		}
	}
	return outcomes
}

func fetched(outcomes []kernelOutcome) []kernel {
	var kernels []kernel
	for _, o := range outcomes {
		if o.err == nil {
			kernels = append(kernels, o.kernel)
		}
	}
	return kernels
}

// runKernels boots the fetched kernels, o.parallel at a time, and fills in
// their outcomes.
func runKernels(ctx context.Context, o options, outcomes []kernelOutcome, initrd string, plan protocol.Plan) {
	sem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	for i := range outcomes {
		out := &outcomes[i]
		if out.err != nil {
			out.report = notRun(plan, "not run: kernel not available")
			continue
		}
		out.log = filepath.Join(o.cache, "logs", out.series+".log")
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			runKernel(ctx, o, out, initrd, plan)
		})
	}
	wg.Wait()
}

func runKernel(ctx context.Context, o options, out *kernelOutcome, initrd string, plan protocol.Plan) {
	fmt.Fprintf(os.Stderr, "vmtest: booting %s (%s)\n", out.kernel, out.series)
	start := time.Now()
	var live io.Writer
	if o.bench != "" { // a kernel that runs out of time has shown what it finished
		live = &benchProgress{w: os.Stderr, kernel: out.series}
	}
	bootErr := boot(ctx, o.arch, out.kernel, initrd, out.log, o.timeout, live)
	out.wall = time.Since(start)
	var readErr error
	out.report, readErr = readReport(out.log, plan)
	out.err = errors.Join(bootErr, readErr)
	fmt.Fprintf(os.Stderr, "vmtest: %s done in %s\n", out.series, out.wall.Round(100*time.Millisecond))
}

// readReport parses a serial log.
func readReport(log string, plan protocol.Plan) (guestReport, error) {
	f, err := os.Open(log)
	if err != nil {
		return notRun(plan, "no result: serial log unreadable"), err
	}
	defer f.Close()
	return parseSerial(f, plan)
}
