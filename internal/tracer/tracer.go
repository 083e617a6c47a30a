package tracer

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// Tracer is attached BPF programs and the ring buffer they report into.
type Tracer struct {
	coll  *ebpf.Collection
	maps  bindwatchMaps
	links []link.Link
	// reader reads the failures (failurering.go).
	reader *failureRing
	// incidents reads the incident records; watched are the ports the
	// kernel reports them for.
	incidents *ringbuf.Reader
	watched   map[PortKey]bool
	noHolders bool
	// udpReleases: the kernel reports UDP holders' releases (udp_lib_unhash).
	udpReleases bool
	// impactSource: the hook counting refused connections and dropped
	// datagrams at watched ports ("" when this kernel has none).
	impactSource string
	backend      Backend
	skipped      map[string]string
	// foldGen is the fold table generation the programs write (fold_gen).
	foldGen uint32
	flipped time.Time // when foldGen last changed
	// genFrom is when each generation last became the one the programs
	// write, and fold the fold window: the span a harvested fold's
	// failures happened in (foldSpan).
	genFrom [2]time.Time
	fold    time.Duration
	// detached is closed once Detach's detaching is done.
	detached chan struct{}
	// hooks are the incident tracepoint programs, attached while the
	// kernel watches a port (WatchPort) and HooksLinger after.
	hooks *hookLife
	// HooksLinger is how long the incident programs stay attached after
	// the last incident closed (DefaultHooksLinger).
	HooksLinger time.Duration
	// LineageErr says why how listeners end is not seen (lineage_exit
	// could not attach); nil when it is, or with --no-holders.
	LineageErr error
	// IOUringErr says why io_uring binds seen by the tracepoint backend
	// come without their address (calibrateIOUring); nil when they do.
	IOUringErr error
	// NetnsCookieErr says why incidents are told apart by their network
	// namespace's inode only (netnsCookies); nil where cookies are read.
	NetnsCookieErr error
}

// Open loads the BPF object configured by cfg and attaches it with the
// configured backend, or with the first that works when cfg.Backend is
// "auto" or empty.
func Open(cfg Config) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	candidates := Backends()
	if cfg.Backend != "" && cfg.Backend != "auto" {
		b, err := BackendNamed(cfg.Backend)
		if err != nil {
			return nil, err
		}
		candidates = []Backend{b}
	}

	skipped := map[string]string{}
	for _, b := range candidates {
		t, err := openBackend(cfg, b)
		if err == nil {
			t.skipped = skipped
			return t, nil
		}
		if len(candidates) == 1 {
			return nil, fmt.Errorf("backend %s: %w", b.Name(), err)
		}
		skipped[b.Name()] = err.Error()
	}
	return nil, fmt.Errorf("no backend works on this kernel: %s (hint: run `bindwatch doctor`)", describeSkipped(skipped))
}

func describeSkipped(skipped map[string]string) string {
	s := ""
	for _, b := range Backends() {
		if why, ok := skipped[b.Name()]; ok {
			if s != "" {
				s += "; "
			}
			s += b.Name() + ": " + why
		}
	}
	return s
}

func openBackend(cfg Config, b Backend) (*Tracer, error) {
	if err := b.Check(); err != nil {
		return nil, err
	}
	spec, err := loadBindwatch()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w (hint: run make generate)", err)
	}
	keep := map[string]bool{}
	impact := impactSource()
	for _, g := range programGroups(b, impact) { // what doctor's Hooks describes
		for _, p := range g.progs {
			keep[p] = keep[p] || loaded(g.when, cfg)
		}
	}
	if !cfg.NoHolders {
		keep[seedProgram] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	if err := cfg.set(spec); err != nil {
		return nil, err
	}
	if c, ok := b.(configurer); ok {
		if err := c.configure(spec); err != nil {
			return nil, fmt.Errorf("configure %s backend: %w", b.Name(), err)
		}
	}
	spec.Maps["events"].MaxEntries = uint32(cfg.RingSize)
	if cfg.RingSize == 0 {
		spec.Maps["events"].MaxEntries = DefaultRingSize
	}

	opts := ebpf.CollectionOptions{Cache: host.KernelBTF}
	if cfg.Debug {
		opts.Programs.LogLevel = ebpf.LogLevelInstruction
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, loadError(err, cfg.Debug)
	}
	t := &Tracer{coll: coll, backend: b, watched: map[PortKey]bool{}, noHolders: cfg.NoHolders, impactSource: impact, HooksLinger: DefaultHooksLinger, fold: cfg.Fold,
		hooks: &hookLife{coll: coll}}
	if err := coll.Assign(&t.maps); err != nil {
		t.Close()
		return nil, fmt.Errorf("BPF object lacks a map: %w (hint: run make generate)", err)
	}
	for _, pid := range cfg.PIDs {
		if err := t.TracePID(pid); err != nil {
			t.Close()
			return nil, err
		}
	}
	t.genFrom[0] = time.Now() // the programs write generation 0 from their attach on
	if t.links, err = b.Attach(coll); err != nil {
		t.Close()
		return nil, err
	}
	if slices.Contains(b.Programs(), ioUringProgram) {
		if err := calibrateIOUring(coll); err != nil {
			t.IOUringErr = fmt.Errorf("io_uring binds are reported without their address: %w", err)
		}
	}
	t.NetnsCookieErr = netnsCookies()
	if cfg.FollowChildren {
		fl, err := attachFollow(coll)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.links = append(t.links, fl...)
	}
	if !cfg.NoHolders {
		// The lineage is evidence for the diagnosis, not the failure
		// itself: a kernel that refuses it still traces, and the
		// diagnosis says it does not know how a listener ended.
		if l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[lineageProgram]}); err == nil {
			t.links = append(t.links, l)
		} else {
			t.LineageErr = fmt.Errorf("attach tp_btf sched_process_exit (how listeners end): %w", err)
		}
	}
	il, err := t.attachIncidents(coll)
	if err != nil {
		t.Close()
		return nil, err
	}
	t.links = append(t.links, il...)
	if t.reader, err = openFailureRing(t.maps.Events); err != nil {
		t.Close()
		return nil, err
	}
	if t.incidents, err = ringbuf.NewReader(t.maps.IncidentEvents); err != nil {
		t.Close()
		return nil, fmt.Errorf("open incident ring buffer: %w", err)
	}
	if !cfg.NoHolders {
		// After attaching, so no listener falls between snapshot and hooks.
		if err := seedHolders(coll.Programs[seedProgram]); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// lineageProgram notes how the processes that took a port, and their
// parents, ended (bpf: the lineage map).
const lineageProgram = "lineage_exit"

// seedProgram records the holders (TCP listeners, bound UDP sockets) that
// exist before tracing starts.
const seedProgram = "seed_holders"

// seedHolders runs the seeding iterator once, to its end.
func seedHolders(prog *ebpf.Program) error {
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach iter/task_file (seed the holder registry): %w (hint: --no-holders runs without the registry)", err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return fmt.Errorf("open holder seeding iterator: %w", err)
	}
	defer rd.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return fmt.Errorf("run holder seeding iterator: %w", err)
	}
	return nil
}

// loadError shortens a verifier error to its tail unless debug asks for the
// whole log.
func loadError(err error, debug bool) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		if debug {
			return fmt.Errorf("load BPF programs: %+v", ve)
		}
		return fmt.Errorf("load BPF programs: %-40v\n(hint: the verifier refused them on this kernel; rerun with --debug for its whole log and report it)", ve)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("load BPF programs: %w (hint: run as root; lockdown or a seccomp/LSM policy may also refuse BPF)", err)
	}
	return fmt.Errorf("load BPF programs: %w", err)
}

// kernelSpec is the running kernel's BTF (host.KernelBTF, decoded once per
// process): the backend checks, CO-RE and attach points all need it.
func kernelSpec() (*btf.Spec, error) { return host.KernelBTF.Kernel() }

// ErrNotPrivileged is why a process without the capabilities cannot
// trace (CheckPrivileges wraps it with what it lacks).
var ErrNotPrivileged = errors.New("tracing needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (CAP_SYS_ADMIN may stand for the first two, and also lets bindwatch look into containers' network namespaces; a user other than root also needs CAP_DAC_READ_SEARCH, for tracefs)")

// CheckPrivileges says, before any bpf() call fails obscurely (or blames
// the kernel), whether this process may load and attach BPF programs: it
// must have CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, in its effective
// set — root whose capabilities a systemd unit or a container dropped
// included. README.md ("Install") lists what each command needs, as
// cmd/bindwatch's TestCapabilities finds it.
func CheckPrivileges() error {
	if host.BPFCapable() && host.PerfmonCapable() {
		return nil
	}
	return fmt.Errorf("%w: this process lacks %s (hint: run it with sudo; a systemd unit or container grants them with CapabilityBoundingSet/AmbientCapabilities or --cap-add)", ErrNotPrivileged, host.MissingCaps(host.CapBPF, host.CapPerfmon))
}

// preflight turns the common reasons BPF cannot work into one sentence each.
func preflight() error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	// Before 5.11 BPF memory counts against RLIMIT_MEMLOCK (64 KiB by
	// default); host.RaiseMemlock raises it only on such kernels.
	if err := host.RaiseMemlock(); err != nil {
		return fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps (this kernel, before 5.11, charges them to it): %w (hint: run as root, or raise it: ulimit -l unlimited)", err)
	}
	if _, err := kernelSpec(); err != nil {
		return fmt.Errorf("this kernel exposes no BTF (/sys/kernel/btf/vmlinux): %w (hint: bindwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, as every major distribution ships since 2021)", err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("this kernel has no BPF ring buffer: bindwatch needs Linux 5.8 or newer")
		}
		return fmt.Errorf("probe BPF support: %w (hint: run as root, or with CAP_BPF and CAP_PERFMON)", err)
	}
	return nil
}

// Backend names the attached backend.
func (t *Tracer) Backend() string { return t.backend.Name() }

// Skipped says why each better backend was not used (auto only).
func (t *Tracer) Skipped() map[string]string { return t.skipped }

// Limits says what this session cannot see or know, and why (the start
// record's limits); nil when nothing is missing.
func (t *Tracer) Limits() map[string]string {
	var l map[string]string
	for name, err := range map[string]error{"lineage": t.LineageErr, "io_uring_addr": t.IOUringErr, "netns_cookie": t.NetnsCookieErr} {
		if err != nil {
			if l == nil {
				l = map[string]string{}
			}
			l[name] = err.Error()
		}
	}
	if t.impactSource == "" {
		if l == nil {
			l = map[string]string{}
		}
		l["client_impact"] = "this kernel's skb:kfree_skb has no drop reason (Linux 5.17+): the connection attempts refused and datagrams dropped at a port with an open incident are not measured, and recovered, abandoned and incident records carry no refused_connections or dropped_datagrams"
	}
	return l
}

// netnsCookies says whether the kernel gives each network namespace a
// cookie when it is made (struct net's u64 net_cookie, Linux 5.12+), which
// the programs read beside the namespace's inode (sock_netns_cookie);
// nil if it does, else why not.
func netnsCookies() error {
	spec, err := kernelSpec()
	if err != nil {
		return err
	}
	var net *btf.Struct
	if err := spec.TypeByName("net", &net); err != nil {
		return fmt.Errorf("no struct net in the kernel's BTF: %w", err)
	}
	for _, m := range net.Members {
		if _, ok := btf.UnderlyingType(m.Type).(*btf.Int); ok && m.Name == "net_cookie" {
			return nil
		}
	}
	return errors.New("this kernel (before 5.12) gives a network namespace no cookie when it is made: incidents are told apart by the namespace's inode alone, which the kernel reuses once a namespace is freed")
}

// Time converts a CLOCK_BOOTTIME timestamp from the kernel to wall time.
func (t *Tracer) Time(bootNS uint64) time.Time {
	return host.BootTime(bootNS)
}

// TracePID adds a process to the --pid filter (with FollowChildren, its
// future children too).
func (t *Tracer) TracePID(pid uint32) error {
	if err := t.maps.TracedPids.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("trace pid %d: %w", pid, err)
	}
	return nil
}

// Traced reports whether pid is in the --pid filter; with FollowChildren,
// whether it is in a traced process's tree (forked from it since tracing
// began, daemons that double-forked included).
func (t *Tracer) Traced(pid int) bool {
	var v uint8
	return pid > 0 && t.maps.TracedPids.Lookup(uint32(pid), &v) == nil
}

// SetDeadline makes a blocked Read return os.ErrDeadlineExceeded at t, so
// the caller can do periodic work. A zero time blocks forever.
func (t *Tracer) SetDeadline(d time.Time) { t.reader.setDeadline(d) }

// Flush makes a blocked Read (or the next one) return ErrFlushed. Unlike
// SetDeadline, it may be called while another goroutine is in Read.
func (t *Tracer) Flush() { t.reader.flush() }

// ErrFlushed is returned by a Read that Flush woke up.
var ErrFlushed = ringbuf.ErrFlushed

// Read blocks until the kernel reports a failure, and decodes it into rec.
func (t *Tracer) Read(rec *Record) error {
	var ev bindwatchEvent
	if err := t.readEvent(&ev); err != nil {
		return err
	}
	*rec = decode(&ev, t.backend, t.Time)
	return nil
}

// readEvent reads the next kernel event as the kernel wrote it.
func (t *Tracer) readEvent(ev *bindwatchEvent) error { return t.reader.read(ev) }

// Stats are the kernel's counters for this session.
type Stats struct {
	// Failures is every failure that passed the filters: each one is read
	// from the ring buffer, folded, lost, or still in the ring buffer.
	Failures uint64
	// Lost is how many found the ring buffer full (and could not be
	// folded instead).
	Lost uint64
	// FoldFull is how many found the fold table full (they are among
	// those read, lost or still queued).
	FoldFull uint64
	// Unfollowed is how many new processes of a followed tree were not
	// followed: the table of traced processes was full.
	Unfollowed uint64
	// IncidentLost is how many incident records (signal, released,
	// recovered, port_shared) found the kernel's incident ring buffer full.
	IncidentLost uint64
}

// Stats sums the per-CPU counters.
func (t *Tracer) Stats() (Stats, error) {
	var per []bindwatchStats
	if err := t.maps.SessionStats.Lookup(uint32(0), &per); err != nil {
		return Stats{}, fmt.Errorf("read kernel counters: %w", err)
	}
	var s Stats
	for _, c := range per {
		s.Failures += c.Failures
		s.Lost += c.Lost
		s.FoldFull += c.FoldFull
		s.Unfollowed += c.Unfollowed
		s.IncidentLost += c.IncidentLost
	}
	return s, nil
}

// Unread is how many failure records wait in the ring buffer, unread.
func (t *Tracer) Unread() uint64 {
	return t.reader.unread()
}

// Detach stops counting at once — the counters, the fold table and the
// ring buffer hold still from its return on, and stay readable until Close
// — and detaches the programs in the background: detaching waits for RCU
// grace periods (0.1-0.3 s on a loaded host), which a stop need not wait
// for. Close waits for it.
func (t *Tracer) Detach() {
	if t.detached != nil {
		return
	}
	t.coll.Variables[bindwatchVarPaused].Set(uint8(1))
	links, done := append(t.links, t.hooks.stop()...), make(chan struct{})
	t.links, t.detached = nil, done
	go func() {
		closeLinks(links)
		close(done)
	}()
	// A program that read paused before it was set is done after this.
	WaitForPrograms()
}

// WaitForPrograms returns once every BPF program running when it was
// called has finished, so that one which read a variable (fold_gen,
// paused) before Go changed it cannot write after this returns. BPF
// programs run inside RCU read-side critical sections, and
// membarrier(MEMBARRIER_CMD_GLOBAL) waits for an RCU grace period
// (synchronize_rcu; ~15 ms here). Where it is refused (nohz_full
// kernels) a pause far longer than any program runs stands in.
func WaitForPrograms() {
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		time.Sleep(20 * time.Millisecond)
	}
}

// Close detaches the programs and frees the ring buffer; a blocked Read
// then returns an error.
func (t *Tracer) Close() error {
	if t.reader != nil {
		t.reader.close()
	}
	if t.incidents != nil {
		t.incidents.Close()
	}
	if t.hooks != nil {
		closeLinks(t.hooks.stop())
	}
	closeLinks(t.links)
	t.links = nil
	if t.detached != nil {
		<-t.detached
	}
	if t.coll != nil {
		t.coll.Close()
	}
	return nil
}
