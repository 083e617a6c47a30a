package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// Backend is one way of hooking the kernel: which programs of the BPF object
// it needs, whether this kernel can run them, and how to attach them.
type Backend interface {
	Name() string
	// Programs names the programs of the BPF object this backend attaches.
	Programs() []string
	// Check asks the kernel, cheaply, whether the backend can work here.
	// An error wraps ebpf.ErrNotSupported when the answer is a plain no.
	Check() error
	// Attach hooks the loaded programs; the links detach them on Close.
	Attach(coll *ebpf.Collection) ([]link.Link, error)
}

// Backends in the order --backend auto tries them: lowest overhead first.
func Backends() []Backend {
	return []Backend{tracepointBackend{}}
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
	return nil, fmt.Errorf("unknown backend %q (hint: one of auto, %v)", name, names)
}

// tracepointBackend uses the syscalls:sys_exit_bind and sys_exit_listen
// tracepoints: available wherever tracefs is, and the only choice on
// kernels without kprobes whose lockdown refuses fentry.
type tracepointBackend struct{}

func (tracepointBackend) Name() string { return "tracepoint" }

func (tracepointBackend) Programs() []string {
	return []string{"tp_exit_bind", "tp_exit_listen"}
}

func (tracepointBackend) Check() error {
	// The exit hooks read the syscall arguments from the task's saved
	// registers instead of pairing with an entry hook.
	if err := features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskPtRegs); err != nil {
		return fmt.Errorf("bpf_task_pt_regs helper (kernel 5.15+): %w", err)
	}
	return ensureTracefs()
}

func (tracepointBackend) Attach(coll *ebpf.Collection) ([]link.Link, error) {
	var links []link.Link
	for _, h := range []struct{ group, name, prog string }{
		{"syscalls", "sys_exit_bind", "tp_exit_bind"},
		{"syscalls", "sys_exit_listen", "tp_exit_listen"},
	} {
		l, err := link.Tracepoint(h.group, h.name, coll.Programs[h.prog], nil)
		if err != nil {
			closeLinks(links)
			if errors.Is(err, ebpf.ErrNotSupported) {
				return nil, fmt.Errorf("attach tracepoint %s:%s: %w", h.group, h.name, err)
			}
			return nil, fmt.Errorf("attach tracepoint %s:%s: %w (hint: is CONFIG_FTRACE_SYSCALLS on? ls %s/events/syscalls)", h.group, h.name, err, tracefsPath)
		}
		links = append(links, l)
	}
	return links, nil
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

func closeLinks(links []link.Link) {
	for _, l := range links {
		l.Close()
	}
}
