package host

import "github.com/cilium/ebpf/btf"

// KernelBTF is the running kernel's BTF, decoded at most once per process
// and shared by the BPF objects cilium/ebpf loads (the tracer's, and
// resolve's iterators when internal/iterload cannot) for CO-RE, attach
// points and kfuncs: each decoding costs ~10 ms of CPU. Pass it as
// ebpf.CollectionOptions.Cache.
var KernelBTF = btf.NewCache()
