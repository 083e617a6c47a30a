package iterload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bindwatch/bindwatch/internal/host"
)

// The socket-owner programs of bpf/iters.bpf.c, fastest first. One is
// loaded, the first the kernel supports (OwnerVariants); the others are
// left out of the load.
const (
	// SocketOwners: iter/task with bpf_rdonly_cast (6.2) and bpf_loop (5.17).
	SocketOwners = itersProgSocketOwners
	// SocketOwnersPerFile: iter/task_file with bpf_probe_read_kernel (5.8).
	SocketOwnersPerFile = itersProgSocketOwnersPerFile
)

// OwnerVariants are the socket-owner programs, fastest first.
var OwnerVariants = []string{SocketOwners, SocketOwnersPerFile}

// The records the iterators write (one per socket owner, one per TIME_WAIT
// socket) and the filter of wanted inodes, laid out as bpf/iters.h has them.
type (
	SocketOwner    = itersSocketOwner
	TimewaitSocket = itersTimewaitSocket
	InodeFilter    = itersInodeFilter
)

// Iterators are bpf/iters.bpf.c loaded and attached: the tcp iterator and
// one socket-owner variant, and the maps that are their input. Their user
// serialises runs, and brackets each with Begin: the maps are shared (with
// other processes too, when opened by OpenShared).
type Iterators struct {
	Owner    string // the socket-owner variant loaded (OwnerVariants)
	Fallback error  // why iterload did not load them (cilium/ebpf did), or nil

	WantedInodes *ebpf.Map
	WantedFilter *ebpf.Map // nil with the per-file variant
	WantedBound  *ebpf.Map
	BoundLookup  *ebpf.Map
	WantedPorts  *ebpf.Map

	Owners   *link.Iter // the socket-owner iterator
	Timewait *link.Iter // the tcp iterator (TIME_WAIT sockets' flags)

	coll *ebpf.Collection // nil when shared
	run  *os.File         // a shared copy's run lock (Begin), or nil
}

// mapFields are the input map fields by the maps' names in
// bpf/iters.bpf.c: the one table loading, pinning and opening use.
func (it *Iterators) mapFields() map[string]**ebpf.Map {
	return map[string]**ebpf.Map{itersMapWantedInodes: &it.WantedInodes, itersMapWantedFilter: &it.WantedFilter,
		itersMapWantedBound: &it.WantedBound, itersMapBoundLookup: &it.BoundLookup, itersMapWantedPorts: &it.WantedPorts}
}

// maps returns the input maps there are by their names.
func (it *Iterators) maps() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for name, f := range it.mapFields() {
		if *f != nil {
			out[name] = *f
		}
	}
	return out
}

// SharedFrom is the directory of the tracer's copy the iterators were
// opened from (OpenShared), or "" when this process loaded them.
func (it *Iterators) SharedFrom() string {
	if it.run == nil {
		return ""
	}
	return filepath.Dir(it.run.Name())
}

// LoadIterators loads the tcp iterator and the first of variants (names in
// OwnerVariants) that this kernel supports: by Load against only the kernel
// types they read, or, when it cannot (or BINDWATCH_ITERLOAD=0 is set), by
// cilium/ebpf against the whole kernel BTF.
func LoadIterators(variants []string) (*Iterators, error) {
	// Before 5.11 BPF maps count against RLIMIT_MEMLOCK (64 KiB by
	// default), and who, wait-free and free load no tracer to raise it;
	// host.RaiseMemlock does so only on such kernels.
	if err := host.RaiseMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for the BPF iterators (this kernel, before 5.11, charges BPF maps to it): %w", err)
	}
	// The kernel's BTF is indexed while the programs are parsed: each
	// takes ~2 ms, and a one-shot who waits for both.
	type opened struct {
		k   *Kernel
		err error
	}
	kernel := make(chan opened, 1)
	go func() {
		k, err := OpenKernel()
		kernel <- opened{k, err}
	}()
	spec, err := loadIters()
	kb := <-kernel
	if kb.k != nil {
		defer kb.k.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF iterators: %w", err)
	}
	var coll *ebpf.Collection
	var owner string
	var tried []string
	var fallback error
	for _, owner = range variants {
		coll, fallback, err = loadOwnerVariant(kb.k, kb.err, spec, owner)
		if err == nil {
			break
		}
		tried = append(tried, fmt.Sprintf("%s: %v", owner, err))
		// A kfunc or helper the kernel lacks is reported as
		// ErrNotSupported (a missing kfunc before anything is loaded):
		// try the next variant. Any other error is not this kernel's age.
		if !errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
	}
	if err != nil {
		if len(tried) > 1 { // say why the faster variants did not load either
			return nil, fmt.Errorf("load BPF iterators: %w (before that, %s)", err, strings.Join(tried[:len(tried)-1], "; "))
		}
		return nil, fmt.Errorf("load BPF iterators: %w", err)
	}
	it := &Iterators{coll: coll, Owner: owner, Fallback: fallback}
	for name, f := range it.mapFields() {
		*f = coll.Maps[name]
	}
	it.Owners, err = link.AttachIter(link.IterOptions{Program: coll.Programs[owner]})
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("attach task iterator %s: %w", owner, err)
	}
	it.Timewait, err = link.AttachIter(link.IterOptions{Program: coll.Programs[itersProgTimewaitSockets]})
	if err != nil {
		it.Owners.Close()
		coll.Close()
		return nil, fmt.Errorf("attach tcp iterator: %w", err)
	}
	return it, nil
}

// loadOwnerVariant loads the iterators' maps, the tcp iterator and the
// socket-owner program owner, by Load against kernel (or, when the
// kernel's BTF could not be opened, kernelErr). fallback is why Load
// could not, when cilium/ebpf loaded them instead (a copy of spec without
// the other variants).
func loadOwnerVariant(kernel *Kernel, kernelErr error, spec *ebpf.CollectionSpec, owner string) (coll *ebpf.Collection, fallback, err error) {
	// First against only the kernel types the iterators read: ~6 ms,
	// where decoding the kernel's whole BTF for cilium/ebpf costs ~20 ms
	// more, most of a one-shot `who`. A kernel without the variant's
	// attach point or kfunc cannot load it either way; anything else
	// Load does not handle is left to cilium/ebpf.
	// BINDWATCH_ITERLOAD=0 forces cilium/ebpf's path: a way round a
	// kernel Load mis-reads, without a new build (README).
	if os.Getenv("BINDWATCH_ITERLOAD") == "0" {
		kernel, kernelErr = nil, errors.New("BINDWATCH_ITERLOAD=0: iterload switched off")
	}
	if fallback = kernelErr; kernel != nil {
		coll, fallback = Load(kernel, spec, []string{owner, itersProgTimewaitSockets})
		if fallback == nil || errors.Is(fallback, ErrNotInKernel) {
			return coll, nil, fallback
		}
	}
	spec = spec.Copy()
	for _, other := range OwnerVariants {
		if other != owner {
			delete(spec.Programs, other)
		}
	}
	coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Cache: host.KernelBTF})
	return coll, fallback, err
}

// Close detaches and unloads the iterators (shared ones stay loaded while
// pinned).
func (it *Iterators) Close() {
	if it.Timewait != nil {
		it.Timewait.Close()
	}
	if it.Owners != nil {
		it.Owners.Close()
	}
	if it.coll != nil {
		it.coll.Close()
		return
	}
	for _, m := range it.maps() {
		m.Close()
	}
	if it.run != nil {
		it.run.Close()
	}
}
