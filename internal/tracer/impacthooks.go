package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// ImpactHooks is the client impact counter alone (tp_btf/kfree_skb),
// attached and detached at will: make bench measures what it adds to
// every packet the kernel drops for no socket, at a port with an open
// incident and elsewhere, in many short rounds.
type ImpactHooks struct {
	prog  *ebpf.Program
	coll  *ebpf.Collection // nil for the empty program
	links []link.Link
	key   bindwatchHolderKey
}

// ErrNoImpactHook: this kernel has no kfree_skb with a drop reason.
var ErrNoImpactHook = errors.New("no client impact hook on this kernel (hint: needs skb:kfree_skb with its drop reason, Linux 5.17+)")

// OpenImpactHooks loads the client impact counter with one incident open,
// on port k of the namespace whose cookie is given (0: any that has the
// inode), as WatchPort would.
func OpenImpactHooks(k PortKey, cookie uint64) (*ImpactHooks, error) {
	if err := preflight(); err != nil {
		return nil, err
	}
	if impactSource() == "" {
		return nil, ErrNoImpactHook
	}
	hk, ok := k.kernel()
	if !ok {
		return nil, fmt.Errorf("impact hooks for port %d/%s: not a TCP or UDP port", k.Port, k.Proto)
	}
	spec, err := loadBindwatch()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	for name := range spec.Programs {
		if name != impactProgram {
			delete(spec.Programs, name)
		}
	}
	var opts ebpf.CollectionOptions
	if ks, err := kernelSpec(); err == nil {
		opts.Programs.KernelTypes = ks
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, fmt.Errorf("load the client impact program: %w", err)
	}
	h := &ImpactHooks{prog: coll.Programs[impactProgram], coll: coll, key: hk}
	if err := coll.Maps[bindwatchMapIncidentCount].Put(uint32(0), uint32(1)); err != nil {
		h.Close()
		return nil, err
	}
	if err := coll.Maps[bindwatchMapIncidentPorts].Put(hk, cookie); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// OpenEmptyImpactHooks loads a program that returns at once on
// kfree_skb: what the kernel charges for running any BPF program on every
// dropped packet, the floor under the counter's own cost.
func OpenEmptyImpactHooks() (*ImpactHooks, error) {
	if err := preflight(); err != nil {
		return nil, err
	}
	if impactSource() == "" {
		return nil, ErrNoImpactHook
	}
	var opts ebpf.ProgramOptions
	if ks, err := kernelSpec(); err == nil {
		opts.KernelTypes = ks
	}
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name: "empty", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "kfree_skb",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("load an empty tp_btf program for skb:kfree_skb: %w", err)
	}
	return &ImpactHooks{prog: p}, nil
}

// Attach attaches the program to skb:kfree_skb.
func (h *ImpactHooks) Attach() error {
	l, err := link.AttachTracing(link.TracingOptions{Program: h.prog})
	if err != nil {
		return fmt.Errorf("attach tp_btf kfree_skb: %w", err)
	}
	h.links = append(h.links, l)
	return nil
}

// Detach detaches it.
func (h *ImpactHooks) Detach() {
	closeLinks(h.links)
	h.links = nil
}

// Count is how many the counter counted at its port so far (0 for the
// empty program).
func (h *ImpactHooks) Count() uint64 {
	if h.coll == nil {
		return 0
	}
	var c bindwatchImpactCount
	if err := h.coll.Maps[bindwatchMapIncidentImpact].Lookup(h.key, &c); err != nil {
		return 0
	}
	return c.Count
}

// Close detaches and unloads it.
func (h *ImpactHooks) Close() {
	h.Detach()
	if h.coll != nil {
		h.coll.Close()
		return
	}
	h.prog.Close()
}
