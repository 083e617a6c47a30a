package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// tpProg is a tp_btf program of the object and the tracepoint it hooks.
type tpProg struct{ group, event, prog string }

// benchHooks are some of the object's tp_btf programs alone, attached and
// detached at will: make bench measures what they add to every event of
// their tracepoints in many short rounds (attaching the whole tracer per
// round would drown them in noise). With empty programs in their place
// it measures the floor: what the kernel charges to run any program there.
type benchHooks struct {
	tps   []tpProg
	progs []*ebpf.Program  // one per tps entry, in its order
	coll  *ebpf.Collection // nil for the empty programs
	links []link.Link
}

// openBenchHooks loads the programs of tps from the object, and nothing
// else of it but the maps they use.
func openBenchHooks(tps []tpProg) (*benchHooks, error) {
	if err := preflight(); err != nil {
		return nil, err
	}
	spec, err := loadBindwatch()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	keep := map[string]bool{}
	for _, tp := range tps {
		keep[tp.prog] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	var opts ebpf.CollectionOptions
	if ks, err := kernelSpec(); err == nil {
		opts.Programs.KernelTypes = ks
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s and the rest of its hooks: %w", tps[0].prog, err)
	}
	h := &benchHooks{tps: tps, coll: coll}
	for _, tp := range tps {
		h.progs = append(h.progs, coll.Programs[tp.prog])
	}
	return h, nil
}

// openEmptyBenchHooks loads, for each tracepoint of tps, a program that
// returns at once.
func openEmptyBenchHooks(tps []tpProg) (*benchHooks, error) {
	if err := preflight(); err != nil {
		return nil, err
	}
	var opts ebpf.ProgramOptions
	if ks, err := kernelSpec(); err == nil {
		opts.KernelTypes = ks
	}
	h := &benchHooks{tps: tps}
	for _, tp := range tps {
		p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
			Name: "empty", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp.event,
			License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		}, opts)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("load an empty tp_btf program for %s:%s: %w", tp.group, tp.event, err)
		}
		h.progs = append(h.progs, p)
	}
	return h, nil
}

// Attach attaches the programs to their tracepoints.
func (h *benchHooks) Attach() error {
	for i, p := range h.progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			h.Detach()
			return fmt.Errorf("attach tp_btf %s: %w", h.tps[i].event, err)
		}
		h.links = append(h.links, l)
	}
	return nil
}

// Detach detaches them.
func (h *benchHooks) Detach() {
	closeLinks(h.links)
	h.links = nil
}

// Close detaches and unloads them.
func (h *benchHooks) Close() {
	h.Detach()
	if h.coll != nil {
		h.coll.Close()
		return
	}
	for _, p := range h.progs {
		p.Close()
	}
}

// IncidentHooks are the incident programs alone (signal, TCP state), for
// make bench: what they add to every TCP state change and every signal of
// a host.
type IncidentHooks struct{ *benchHooks }

// OpenIncidentHooks loads the incident programs, with one incident open
// (incident_count 1) so that they go as far as they do on a host with an
// outage under way somewhere.
func OpenIncidentHooks() (*IncidentHooks, error) {
	h, err := openBenchHooks(incidentTracepoints)
	if err != nil {
		return nil, err
	}
	if err := h.coll.Maps[bindwatchMapIncidentCount].Put(uint32(0), uint32(1)); err != nil {
		h.Close()
		return nil, err
	}
	return &IncidentHooks{h}, nil
}

// OpenEmptyIncidentHooks is OpenIncidentHooks' floor: empty programs on
// the same tracepoints.
func OpenEmptyIncidentHooks() (*IncidentHooks, error) {
	h, err := openEmptyBenchHooks(incidentTracepoints)
	if err != nil {
		return nil, err
	}
	return &IncidentHooks{h}, nil
}

// impactTracepoint is the client impact counter's hook.
var impactTracepoint = []tpProg{{"skb", "kfree_skb", impactProgram}}

// ImpactHooks is the client impact counter alone (tp_btf/kfree_skb), for
// make bench: what it adds to every packet the kernel drops for no
// socket, at a port with an open incident and elsewhere.
type ImpactHooks struct {
	*benchHooks
	key bindwatchHolderKey
}

// ErrNoImpactHook: this kernel has no kfree_skb with a drop reason.
var ErrNoImpactHook = errors.New("no client impact hook on this kernel (hint: needs skb:kfree_skb with its drop reason, Linux 5.17+)")

// OpenImpactHooks loads the client impact counter with one incident open,
// on port k of the namespace whose cookie is given (0: any that has the
// inode), as WatchPort would.
func OpenImpactHooks(k PortKey, cookie uint64) (*ImpactHooks, error) {
	hk, ok := k.kernel()
	if !ok {
		return nil, fmt.Errorf("impact hooks for port %d/%s: not a TCP or UDP port", k.Port, k.Proto)
	}
	if impactSource() == "" {
		return nil, ErrNoImpactHook
	}
	h, err := openBenchHooks(impactTracepoint)
	if err != nil {
		return nil, err
	}
	if err := h.coll.Maps[bindwatchMapIncidentCount].Put(uint32(0), uint32(1)); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.coll.Maps[bindwatchMapIncidentPorts].Put(hk, cookie); err != nil {
		h.Close()
		return nil, err
	}
	return &ImpactHooks{benchHooks: h, key: hk}, nil
}

// OpenEmptyImpactHooks is OpenImpactHooks' floor: an empty program on
// skb:kfree_skb.
func OpenEmptyImpactHooks() (*ImpactHooks, error) {
	if impactSource() == "" {
		return nil, ErrNoImpactHook
	}
	h, err := openEmptyBenchHooks(impactTracepoint)
	if err != nil {
		return nil, err
	}
	return &ImpactHooks{benchHooks: h}, nil
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
