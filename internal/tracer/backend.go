package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// Backend is one way of hooking the kernel: which programs of the BPF object
// it needs, whether this kernel can run them, how to attach them, and what
// differs in what it sees (its hooks' names, its UDP release hook, the UDP
// sends it reports). Nothing outside a backend's own methods asks for it by
// name: a new backend is a type here, its programs in bpf/bindwatch/, and
// its name in Backends.
type Backend interface {
	Name() string
	// Programs names the programs of the BPF object this backend attaches.
	Programs() []string
	// Check asks the kernel, cheaply, whether the backend can work here.
	// An error wraps ebpf.ErrNotSupported when the answer is a plain no.
	Check() error
	// Attach hooks the loaded programs; the links detach them on Close.
	Attach(coll *ebpf.Collection) ([]link.Link, error)

	// hookKind is how a kernel function's hook is named in a failure's
	// "hook" field, before the function ("fexit/", "kretprobe/"); ""
	// where the hooks are tracepoints, named by their tracefs path.
	hookKind() string
	// udpReleaseProgram names the incident program that sees a UDP
	// socket leave its port (udp_lib_unhash), "" when the backend has
	// none (a poll sees UDP holders go); attachUDPRelease attaches it.
	udpReleaseProgram() string
	attachUDPRelease(coll *ebpf.Collection) (link.Link, error)
	// udpSendsSeen says which of a UDP socket's sends whose autobind
	// finds no port the backend reports ("sendto", "sendmsg").
	udpSendsSeen() []string
}

// Backends in the order --backend auto tries them: lowest overhead first.
func Backends() []Backend {
	return []Backend{fentryBackend{}, kprobeBackend{}, tracepointBackend{}}
}

// kernelFuncs are the kernel functions the fentry and kprobe backends hook,
// with the hook programs' name suffix. Their signatures are the same from
// 5.10 to 6.18 (6.7 added inet_bind_sk beneath inet_bind, not instead).
var kernelFuncs = []string{"inet_bind", "inet6_bind", "inet_listen"}

// implicitFuncs are where the kernel picks a local port by itself: TCP
// connect()'s inet_hash_connect, UDP connect()'s inet_dgram_connect and
// sendto()/sendmsg()'s inet_sendmsg and inet6_sendmsg (inet_autobind is
// static, inlined into them). The fentry backend hooks those the kernel's
// BTF has (inet6_sendmsg is in a module where IPv6 is one: its UDP sends
// are then not seen); the kprobe backend the connects only.
var implicitFuncs = []string{"inet_hash_connect", "inet_dgram_connect", "inet_sendmsg", "inet6_sendmsg"}

// kprobeImplicitFuncs: a kprobe pair stashes on every call, so the kprobe
// backend hooks only the connects, not every send (a UDP sendto() that
// finds no port is not seen there).
var kprobeImplicitFuncs = []string{"inet_hash_connect", "inet_dgram_connect"}

// haveKernelFunc says whether the kernel's BTF has function fn.
func haveKernelFunc(fn string) bool {
	spec, err := kernelSpec()
	if err != nil {
		return false
	}
	var f *btf.Func
	return spec.TypeByName(fn, &f) == nil
}

// fentryBackend hooks the functions' returns with fexit programs: arguments
// and return value in one program, the cheapest hook there is. Lockdown
// (integrity) refuses to load them on some kernels.
type fentryBackend struct{}

func (fentryBackend) Name() string { return "fentry" }

func (fentryBackend) Programs() []string {
	var p []string
	for _, fn := range kernelFuncs {
		p = append(p, "fexit_"+fn)
	}
	for _, fn := range implicitFuncs {
		if haveKernelFunc(fn) {
			p = append(p, "fexit_"+fn)
		}
	}
	return p
}

func (fentryBackend) Check() error {
	if err := features.HaveProgramType(ebpf.Tracing); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("the kernel refuses fentry programs (EPERM: lockdown or an LSM policy)")
		}
		return fmt.Errorf("BPF tracing programs: %w", err)
	}
	return kernelHasFuncs()
}

func (b fentryBackend) Attach(coll *ebpf.Collection) ([]link.Link, error) {
	var links []link.Link
	for _, name := range b.Programs() {
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name]})
		if err != nil {
			closeLinks(links)
			return nil, fmt.Errorf("attach fexit %s: %w", name[len("fexit_"):], err)
		}
		links = append(links, l)
	}
	return links, nil
}

// kernelHasFuncs asks the kernel's BTF whether every hooked function
// exists (not inlined away, not renamed).
func kernelHasFuncs() error {
	spec, err := kernelSpec()
	if err != nil {
		return fmt.Errorf("kernel BTF: %w", err)
	}
	for _, fn := range kernelFuncs {
		var f *btf.Func
		if err := spec.TypeByName(fn, &f); err != nil {
			return fmt.Errorf("kernel function %s not in BTF: %w", fn, ebpf.ErrNotSupported)
		}
	}
	return nil
}

// kprobeBackend pairs a kprobe and a kretprobe on each function, the
// arguments stashed per thread between them. Works without BTF'd tracing
// programs, but needs CONFIG_KPROBES.
type kprobeBackend struct{}

func (kprobeBackend) Name() string { return "kprobe" }

func (kprobeBackend) Programs() []string {
	var p []string
	for _, fn := range append(kernelFuncs, kprobeImplicitFuncs...) {
		p = append(p, "kprobe_"+fn, "kretprobe_"+fn)
	}
	return p
}

func (fentryBackend) hookKind() string          { return "fexit/" }
func (fentryBackend) udpReleaseProgram() string { return "fentry_" + udpUnhash }
func (fentryBackend) udpSendsSeen() []string    { return []string{"sendto", "sendmsg"} }

func (b fentryBackend) attachUDPRelease(coll *ebpf.Collection) (link.Link, error) {
	return link.AttachTracing(link.TracingOptions{Program: coll.Programs[b.udpReleaseProgram()]})
}

func (kprobeBackend) Check() error {
	if err := features.HaveProgramType(ebpf.Kprobe); err != nil {
		return fmt.Errorf("BPF kprobe programs: %w", err)
	}
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err != nil {
		return fmt.Errorf("the kernel has no kprobes (CONFIG_KPROBES off: no /sys/bus/event_source/devices/kprobe): %w", ebpf.ErrNotSupported)
	}
	return kernelHasFuncs()
}

func (kprobeBackend) Attach(coll *ebpf.Collection) ([]link.Link, error) {
	var links []link.Link
	for _, fn := range append(kernelFuncs, kprobeImplicitFuncs...) {
		entry, err := link.Kprobe(fn, coll.Programs["kprobe_"+fn], nil)
		if err == nil {
			links = append(links, entry)
			var ret link.Link
			ret, err = link.Kretprobe(fn, coll.Programs["kretprobe_"+fn], nil)
			if err == nil {
				links = append(links, ret)
				continue
			}
		}
		closeLinks(links)
		return nil, fmt.Errorf("attach kprobe %s: %w", fn, err)
	}
	return links, nil
}

func (kprobeBackend) hookKind() string          { return "kretprobe/" }
func (kprobeBackend) udpReleaseProgram() string { return "kprobe_" + udpUnhash }

// udpSendsSeen: none, as a kprobe pair would stash on every send.
func (kprobeBackend) udpSendsSeen() []string { return nil }

func (b kprobeBackend) attachUDPRelease(coll *ebpf.Collection) (link.Link, error) {
	return link.Kprobe(udpUnhash, coll.Programs[b.udpReleaseProgram()], nil)
}

// BackendNamed returns the backend called name, or an error naming the
// known ones.
func BackendNamed(name string) (Backend, error) {
	var names []string
	for _, b := range Backends() {
		if b.Name() == name {
			return b, nil
		}
		names = append(names, b.Name())
	}
	return nil, fmt.Errorf("unknown backend %q (want one of auto, %s)", name, strings.Join(names, ", "))
}

// tracepointBackend uses the syscalls:sys_exit_bind and sys_exit_listen
// tracepoints: available wherever tracefs is, and the only choice on
// kernels without kprobes whose lockdown refuses fentry. Before 5.15 (no
// bpf_task_pt_regs) the exits pair with the enter tracepoints.
type tracepointBackend struct{}

func (tracepointBackend) Name() string { return "tracepoint" }

// argsInRegs says whether exit programs can read the syscall arguments
// from the task's saved registers (bpf_task_pt_regs, 5.15+). A variable so
// tests can force the paired mode of older kernels.
var argsInRegs = func() bool {
	return features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskPtRegs) == nil
}

// directReads says whether the hot paths may read kernel structs with
// plain loads through typed pointers instead of a probe-read helper call per
// field (bpf/bindwatch/common.h, "Direct reads"): the kernel must have
// bpf_get_current_task_btf (5.11) and the bpf_rdonly_cast kfunc (6.2).
// The probe-read path is what kernels before 6.2 (5.10 and 6.1 in vmtest)
// and the kprobe backend run.
func directReads() bool {
	if features.HaveProgramHelper(ebpf.TracePoint, asm.FnGetCurrentTaskBtf) != nil {
		return false
	}
	spec, err := kernelSpec()
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName("bpf_rdonly_cast", &fn) == nil
}

// tickHZ is the kernel's tick rate where the programs may time things in
// jiffies (fold windows, bpf/bindwatch/folds.h; when a holder took its
// port, holders.h), which costs a load where the boot clock costs a TSC
// read; 0, for the boot clock, when the rate is unknown (host.KernelHZ) or
// tracing programs lack bpf_jiffies64. A variable so tests can force the
// boot clock.
var tickHZ = func() uint32 {
	hz := host.KernelHZ()
	if hz <= 0 || features.HaveProgramHelper(ebpf.TracePoint, asm.FnJiffies64) != nil {
		return 0
	}
	return uint32(hz)
}

// foldJiffies is the fold window in jiffies when the tick times it, or 0,
// for the boot clock: no tick (tickHZ), or a window under 100 ticks (the
// tick would time it less closely than to 1%).
func foldJiffies(fold time.Duration) uint64 {
	hz := uint64(tickHZ())
	// Whole seconds first: nanoseconds × hz overflows for a --fold of
	// months. The rest rounds up to a tick.
	sec, rest := uint64(fold/time.Second), uint64(fold%time.Second)
	ticks := sec*hz + (rest*hz+uint64(time.Second)-1)/uint64(time.Second)
	if ticks < 100 {
		return 0
	}
	return ticks
}

func (tracepointBackend) Programs() []string {
	progs := []string{"tp_exit_bind", "tp_exit_listen", "tp_exit_connect", "tp_exit_sendto"}
	if argsInRegs() {
		progs = append(progs, "tp_exit_sendmsg")
	} else {
		// Paired (before 5.15): sendmsg()'s address is in user memory, so
		// its enter would stash on every send; its failures go unseen.
		progs = append(progs, "tp_enter_bind", "tp_enter_listen", "tp_enter_connect", "tp_enter_sendto")
	}
	if haveIOUringBind() {
		progs = append(progs, ioUringProgram)
	}
	return progs
}

// ioUringProgram sees io_uring's binds and listens, which pass no syscall
// (bpf: uring_complete).
const ioUringProgram = "uring_complete"

// haveIOUringBind says whether the kernel has IORING_OP_BIND (6.11+):
// its request type is in the kernel's BTF. A variable so tests can force
// the answer.
var haveIOUringBind = func() bool {
	spec, err := kernelSpec()
	if err != nil {
		return false
	}
	var bind *btf.Struct
	return spec.TypeByName("io_bind", &bind) == nil
}

func (tracepointBackend) hookKind() string          { return "" }
func (tracepointBackend) udpReleaseProgram() string { return "" }

func (tracepointBackend) attachUDPRelease(*ebpf.Collection) (link.Link, error) {
	return nil, fmt.Errorf("the tracepoint backend has no UDP release hook: %w", ebpf.ErrNotSupported)
}

// udpSendsSeen: before 5.15 sendto() only (see Programs).
func (tracepointBackend) udpSendsSeen() []string {
	if !argsInRegs() {
		return []string{"sendto"}
	}
	return []string{"sendto", "sendmsg"}
}

func (tracepointBackend) configure(spec *ebpf.CollectionSpec) error {
	return spec.Variables["args_in_regs"].Set(boolByte(argsInRegs()))
}

func (tracepointBackend) Check() error {
	if err := features.HaveProgramType(ebpf.TracePoint); err != nil {
		return fmt.Errorf("BPF tracepoint programs: %w", err)
	}
	return host.EnsureTracefs()
}

func (b tracepointBackend) Attach(coll *ebpf.Collection) ([]link.Link, error) {
	var links []link.Link
	for _, name := range b.Programs() {
		if name == ioUringProgram {
			l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name]})
			if err != nil {
				closeLinks(links)
				return nil, fmt.Errorf("attach tp_btf io_uring_complete (io_uring's binds): %w (hint: --backend kprobe or fentry see them through inet_bind where the kernel allows)", err)
			}
			links = append(links, l)
			continue
		}
		event := "sys_" + name[len("tp_"):] // tp_exit_bind -> sys_exit_bind
		l, err := link.Tracepoint("syscalls", event, coll.Programs[name], nil)
		if err != nil {
			closeLinks(links)
			if errors.Is(err, ebpf.ErrNotSupported) {
				return nil, fmt.Errorf("attach tracepoint syscalls:%s: %w", event, err)
			}
			return nil, fmt.Errorf("attach tracepoint syscalls:%s: %w (hint: is CONFIG_FTRACE_SYSCALLS on? ls %s/events/syscalls)", event, err, host.TracefsPath)
		}
		links = append(links, l)
	}
	return links, nil
}

// configurer is a Backend that sets constants of the BPF object before it
// is loaded.
type configurer interface {
	configure(spec *ebpf.CollectionSpec) error
}

// followPrograms track the process tree for --pid --follow-children; every
// backend uses them when asked.
var followPrograms = []string{"follow_fork", "follow_exit"}

func attachFollow(coll *ebpf.Collection) ([]link.Link, error) {
	var links []link.Link
	for _, name := range followPrograms {
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name]})
		if err != nil {
			closeLinks(links)
			return nil, fmt.Errorf("attach tp_btf %s (follow children): %w (hint: needs a kernel with BTF and tp_btf, 5.5+)", name, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// closeLinks detaches links side by side: each waits for RCU grace
// periods of its own (tens of milliseconds on a loaded host).
func closeLinks(links []link.Link) {
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Go(func() { l.Close() })
	}
	wg.Wait()
}

// UDPSendsSeen says which of a UDP socket's sends whose autobind finds no
// port the backend named reports ("sendto", "sendmsg"): the kprobe backend
// none (a kprobe pair would stash on every send), the tracepoint backend
// before 5.15 sendto() only (see tracepointBackend.Programs); nil for an
// unknown backend.
func UDPSendsSeen(backend string) []string {
	b, err := BackendNamed(backend)
	if err != nil {
		return nil
	}
	return b.udpSendsSeen()
}
