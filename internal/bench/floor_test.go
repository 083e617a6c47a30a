package bench

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// bindFloor is the kernel's part of what a backend costs a bind(): a BPF
// program that returns at once, attached where the backend hooks a bind's
// return (sys_exit_bind; fexit of inet_bind; a kprobe and a kretprobe on
// it). The bind benchmarks' "floor" phases time binds with it attached, so
// the README can say how much of a ratio is the hook's dispatch and how
// much bindwatch's program. attach returns what detaches it.
type bindFloor struct {
	links func() ([]link.Link, error)
}

// newBindFloor loads the empty program(s) for backend.
func newBindFloor(b *testing.B, backend string) *bindFloor {
	b.Helper()
	empty := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	load := func(spec *ebpf.ProgramSpec) *ebpf.Program {
		spec.License, spec.Instructions = "GPL", empty
		p, err := ebpf.NewProgram(spec)
		if err != nil {
			b.Fatalf("loading an empty %v program for the %s backend's floor: %v (hint: needs root and a kernel with BPF)", spec.Type, backend, err)
		}
		b.Cleanup(func() { p.Close() })
		return p
	}
	f := &bindFloor{}
	switch backend {
	case "tracepoint":
		p := load(&ebpf.ProgramSpec{Type: ebpf.TracePoint})
		f.links = func() ([]link.Link, error) {
			l, err := link.Tracepoint("syscalls", "sys_exit_bind", p, nil)
			return []link.Link{l}, err
		}
	case "fentry":
		p := load(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFExit, AttachTo: "inet_bind"})
		f.links = func() ([]link.Link, error) {
			l, err := link.AttachTracing(link.TracingOptions{Program: p})
			return []link.Link{l}, err
		}
	case "kprobe":
		p := load(&ebpf.ProgramSpec{Type: ebpf.Kprobe})
		f.links = func() ([]link.Link, error) {
			in, err := link.Kprobe("inet_bind", p, nil)
			if err != nil {
				return nil, err
			}
			out, err := link.Kretprobe("inet_bind", p, nil)
			if err != nil {
				in.Close()
				return nil, err
			}
			return []link.Link{in, out}, nil
		}
	default:
		b.Fatalf("no floor for backend %q", backend)
	}
	return f
}

// attached runs phase with the empty program(s) attached.
func (f *bindFloor) attached(b *testing.B, phase func()) {
	b.Helper()
	ls, err := f.links()
	if err != nil {
		b.Fatalf("attaching the floor's empty program: %v", err)
	}
	phase()
	for _, l := range ls {
		l.Close()
	}
}

// chosenBackend is the backend bindwatch picks here (BINDWATCH_TEST_BACKEND,
// or auto's choice), learnt by attaching it once.
func chosenBackend(b *testing.B) string {
	b.Helper()
	p := attach(b, true, 1)
	name := p.backend
	p.detach(b)
	return name
}
