package tracer

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// PortRange is an inclusive range of ports for the in-kernel port filter.
type PortRange struct{ Lo, Hi uint16 }

// InPortRanges tells whether port is in one of ranges.
func InPortRanges(ranges []PortRange, port uint16) bool {
	for _, r := range ranges {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// MaxPortRanges is how many --port ranges the kernel filter holds.
const MaxPortRanges = 16

// Errnos are the errors bindwatch traces, in the order of their filter bits.
// EAGAIN is a UDP connect()'s or sendto()'s autobind finding no port
// (only such failures are traced: see bpf report_implicit).
var Errnos = []syscall.Errno{syscall.EADDRINUSE, syscall.EADDRNOTAVAIL, syscall.EACCES, syscall.EINVAL, syscall.EAGAIN}

// Config says what to trace and how. The zero value traces every covered
// failure on every port with no folding, using the best backend.
type Config struct {
	// Backend is "auto", "fentry", "kprobe" or "tracepoint".
	Backend string
	// Errnos narrows the traced errors (a subset of Errnos); empty: all.
	Errnos []syscall.Errno
	// Ports narrows to these ports; empty: all.
	Ports []PortRange
	// PIDs narrows to these processes (and, with FollowChildren, to every
	// process they fork from now on).
	PIDs           []uint32
	FollowChildren bool
	// Comm narrows to processes whose comm (at most 15 bytes) equals it.
	Comm string
	// Netns narrows to processes in the network namespace of this inode;
	// 0: every one.
	Netns uint32
	// Fold counts, instead of reporting, repeats of one process's failure
	// on one port within this window. 0 reports every failure.
	Fold time.Duration
	// RingSize is the ring buffer's size in bytes: a power of two and a
	// multiple of the page size. 0 means 1 MiB.
	RingSize int
	// NoHolders disables the in-kernel registry of holders (TCP listeners,
	// bound UDP sockets).
	NoHolders bool
	// Debug puts the whole verifier log in load errors, not just its tail.
	Debug bool
}

// ProbeMark is the SO_MARK of bindwatch's own test binds, whose failures
// the tracer does not report: host.ProbeMark, which every prober sets
// (host.MarkProbe), is this value.
const ProbeMark = int(probeMark)

// probeMark is BW_PROBE_MARK of bpf/bindwatch.h.
const probeMark = bindwatchBwMarkBW_PROBE_MARK

// MaxRingSize caps the ring buffer: it is kernel memory, pinned for as
// long as tracing runs, and the kernel's own limit is far above what any
// host could spare.
const MaxRingSize = 256 << 20

// DefaultRingSize holds ~2,000 events: a second of a heavy storm without
// folding, while user space resolves holders.
const DefaultRingSize = 1 << 20

// Validate says what is wrong with c, if anything, before anything is
// loaded into the kernel.
func (c *Config) Validate() error {
	if c.Backend != "" && c.Backend != "auto" {
		if _, err := BackendNamed(c.Backend); err != nil {
			return err
		}
	}
	if c.Fold < 0 {
		return fmt.Errorf("fold window %v is negative (hint: 0 reports every failure)", c.Fold)
	}
	if len(c.Ports) > MaxPortRanges {
		return fmt.Errorf("%d port ranges given, at most %d fit the kernel filter (hint: merge them into ranges like 8000-8100)", len(c.Ports), MaxPortRanges)
	}
	for _, r := range c.Ports {
		if r.Lo > r.Hi {
			return fmt.Errorf("port range %d-%d is empty (hint: write the low port first)", r.Lo, r.Hi)
		}
	}
	if len(c.Comm) > 15 {
		return fmt.Errorf("comm %q is longer than the kernel's 15 bytes (hint: give its first 15 characters, as ps -o comm shows)", c.Comm)
	}
	if c.RingSize != 0 {
		page := os.Getpagesize()
		if c.RingSize > MaxRingSize {
			return fmt.Errorf("ring size %d bytes is more than the %d (256 MiB) bindwatch pins in the kernel: that already holds ~350,000 failures (hint: narrow with --port or --pid; --fold counts repeats without filling it)", c.RingSize, MaxRingSize)
		}
		if c.RingSize < page || c.RingSize&(c.RingSize-1) != 0 {
			return fmt.Errorf("ring size %d is not a power of two of at least %d bytes (such as 1048576, 16777216)", c.RingSize, page)
		}
	}
	for _, e := range c.Errnos {
		if errnoBit(e) == 0 {
			return fmt.Errorf("errno %v is not traced (hint: one of EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL, EAGAIN)", e)
		}
	}
	return nil
}

func errnoBit(e syscall.Errno) uint32 {
	switch e {
	case syscall.EADDRINUSE:
		return uint32(bindwatchBwErrnoBitBW_ERR_EADDRINUSE)
	case syscall.EADDRNOTAVAIL:
		return uint32(bindwatchBwErrnoBitBW_ERR_EADDRNOTAVAIL)
	case syscall.EACCES:
		return uint32(bindwatchBwErrnoBitBW_ERR_EACCES)
	case syscall.EINVAL:
		return uint32(bindwatchBwErrnoBitBW_ERR_EINVAL)
	case syscall.EAGAIN:
		return uint32(bindwatchBwErrnoBitBW_ERR_EAGAIN)
	}
	return 0
}

// set writes the configuration into the spec's .rodata before loading.
func (c *Config) set(spec *ebpf.CollectionSpec) error {
	mask := uint32(0)
	for _, e := range c.Errnos {
		mask |= errnoBit(e)
	}
	if mask == 0 {
		for _, e := range Errnos {
			mask |= errnoBit(e)
		}
	}
	var ranges [MaxPortRanges]bindwatchPortRange
	for i, r := range c.Ports {
		ranges[i] = bindwatchPortRange{Lo: r.Lo, Hi: r.Hi}
	}
	var comm [16]int8
	for i := 0; i < len(c.Comm); i++ {
		comm[i] = int8(c.Comm[i])
	}
	sets := []struct {
		name  string
		value any
	}{
		{"errno_mask", mask},
		{"filter_pids", boolByte(len(c.PIDs) > 0)},
		{"follow_children", boolByte(c.FollowChildren)},
		{"filter_comm_len", uint8(len(c.Comm))},
		{"filter_comm", comm},
		{"filter_netns", c.Netns},
		{"n_port_ranges", uint32(len(c.Ports))},
		{"port_ranges", ranges},
		{"fold_ns", uint64(c.Fold.Nanoseconds())},
		{"record_holders", boolByte(!c.NoHolders)},
		{"direct_reads", boolByte(directReads())},
		{"fold_jiffies", foldJiffies(c.Fold)},
		{"holder_hz", tickHZ()},
	}
	for _, s := range sets {
		v, ok := spec.Variables[s.name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s (hint: run make generate)", s.name)
		}
		if err := v.Set(s.value); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
