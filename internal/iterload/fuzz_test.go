package iterload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// FuzzKernelBTF feeds the BTF reader (index, find, the copier and
// reducedSpec) bytes shaped like /sys/kernel/btf/vmlinux: the kernel's
// bytes are parsed by hand here, and bindwatch runs as root. Whatever the
// bytes, the reader must refuse them or read them without a panic; what
// find answers must be a type of that kind and name; a struct's copy has
// its members; and where cilium/ebpf reads the same bytes, index accepts
// them too and find gives the IDs cilium/ebpf gives. make test runs it for
// a bounded time (make fuzz); the seeds are small pieces of the running
// kernel's BTF (a few of the types the iterators read, written out again
// by cilium/ebpf) and a synthetic one for machines without it.
func FuzzKernelBTF(f *testing.F) {
	for _, seed := range btfSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		k := &Kernel{raw: raw}
		indexErr := k.index()
		ref, refErr := btf.LoadSpecFromReader(bytes.NewReader(raw))
		if indexErr != nil {
			// cilium/ebpf reads types with reserved info bits set, which
			// the kernel refuses, so its own BTF never has them.
			if _, n, ok := compositesOf(ref, refErr); ok && n > 0 && le.Uint16(raw) == btfMagic && !errors.Is(indexErr, errReservedInfo) {
				t.Fatalf("index refused BTF cilium/ebpf reads: %v", indexErr)
			}
			return
		}
		funcs, composites := namesIn(k, 64)
		funcIDs, compositeIDs := k.find(funcs, composites)
		for name, ids := range funcIDs {
			checkFound(t, k, name, ids, kindFunc)
		}
		for name, ids := range compositeIDs {
			checkFound(t, k, name, ids, kindStruct, kindUnion)
		}
		// cilium/ebpf reads some damaged BTF as fewer types, without an
		// error: compared only where both read as many types.
		if composites, n, ok := compositesOf(ref, refErr); ok && n == len(k.offsets)-1 {
			for name, ids := range compositeIDs {
				if want := composites[name]; !slices.Equal(ids, want) {
					t.Fatalf("find %s: IDs %v, cilium/ebpf says %v", name, ids, want)
				}
			}
		}
		c := &copier{k: k, done: map[btf.TypeID]btf.Type{}}
		for id := btf.TypeID(1); int(id) < len(k.offsets) && id <= 256; id++ {
			typ, err := c.copy(id)
			if err != nil {
				continue
			}
			_, kind, vlen, _, _ := k.header(int(k.offsets[id]))
			var members []btf.Member
			switch typ := typ.(type) {
			case *btf.Struct:
				members = typ.Members
			case *btf.Union:
				members = typ.Members
			}
			if (kind == kindStruct || kind == kindUnion) && len(members) != vlen {
				t.Fatalf("type %d: copied %d members, the BTF has %d", id, len(members), vlen)
			}
		}
		_, _, _ = reducedSpec(k, compositeIDs)
	})
}

// compositesOf returns the IDs of ref's structs and unions by name, and
// how many types it has, if cilium/ebpf read the BTF and decodes every
// type of it (it decodes them lazily, and is stricter than index, which
// reads only the headers).
func compositesOf(ref *btf.Spec, err error) (map[string][]btf.TypeID, int, bool) {
	if err != nil {
		return nil, 0, false
	}
	ids := map[string][]btf.TypeID{}
	n := 0
	for id := btf.TypeID(1); ; id++ {
		typ, err := ref.TypeByID(id)
		if errors.Is(err, btf.ErrNotFound) {
			break
		} else if err != nil {
			return nil, 0, false
		}
		n++
		switch typ.(type) {
		case *btf.Struct, *btf.Union:
			ids[typ.TypeName()] = append(ids[typ.TypeName()], id)
		}
	}
	return ids, n, true
}

// namesIn returns the names of up to max functions and composites of k.
func namesIn(k *Kernel, max int) (funcs, composites []string) {
	for id := 1; id < len(k.offsets) && len(funcs)+len(composites) < max; id++ {
		nameOff, kind, _, _, _ := k.header(int(k.offsets[id]))
		switch kind {
		case kindFunc:
			funcs = append(funcs, k.name(nameOff))
		case kindStruct, kindUnion:
			composites = append(composites, k.name(nameOff))
		}
	}
	return funcs, composites
}

// checkFound fails t unless each of ids is a type of one of kinds named
// name.
func checkFound(t *testing.T, k *Kernel, name string, ids []btf.TypeID, kinds ...int) {
	t.Helper()
	for _, id := range ids {
		if id == 0 || int(id) >= len(k.offsets) {
			t.Fatalf("find %s: ID %d out of range", name, id)
		}
		nameOff, kind, _, _, _ := k.header(int(k.offsets[id]))
		if got := k.name(nameOff); got != name {
			t.Fatalf("find %s: ID %d is named %q", name, id, got)
		}
		ok := false
		for _, want := range kinds {
			ok = ok || kind == want
		}
		if !ok {
			t.Fatalf("find %s: ID %d is of kind %d, want %v", name, id, kind, kinds)
		}
	}
}

// btfSeeds are raw BTF blobs: a few of the kernel's types the iterators
// read (copied, so pointers point to void), with the function an iterator
// attaches to, and a synthetic blob of every kind the copier takes.
func btfSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	marshal := func(types []btf.Type) {
		b, err := btf.NewBuilder(types, nil)
		if err != nil {
			tb.Fatal(err)
		}
		raw, err := b.Marshal(nil, &btf.MarshalOptions{Order: binary.LittleEndian})
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, raw)
	}
	u32 := &btf.Int{Name: "u32", Size: 4}
	s8 := &btf.Int{Name: "char", Size: 1, Encoding: btf.Signed}
	inner := &btf.Struct{Name: "inner", Size: 8, Members: []btf.Member{{Name: "a", Type: u32}, {Name: "b", Type: u32, Offset: 32, BitfieldSize: 3}}}
	outer := &btf.Struct{Name: "outer", Size: 40, Members: []btf.Member{
		{Name: "in", Type: inner},
		{Name: "p", Type: &btf.Pointer{Target: inner}, Offset: 64},
		{Name: "name", Type: &btf.Array{Type: s8, Index: u32, Nelems: 8}, Offset: 128},
		{Name: "e", Type: &btf.Typedef{Name: "e_t", Type: &btf.Const{Type: &btf.Enum{Name: "e", Size: 4, Values: []btf.EnumValue{{Name: "E", Value: 1}}}}}, Offset: 192},
		{Name: "u", Type: &btf.Union{Name: "u", Size: 8, Members: []btf.Member{{Name: "f", Type: &btf.Float{Name: "double", Size: 8}}}}, Offset: 256},
	}}
	proto := &btf.FuncProto{Return: u32, Params: []btf.FuncParam{{Name: "ctx", Type: &btf.Pointer{Target: outer}}}}
	marshal([]btf.Type{outer, &btf.Func{Name: "bpf_iter_task", Type: proto, Linkage: btf.GlobalFunc}, &btf.Fwd{Name: "later", Kind: btf.FwdUnion}})

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return seeds
	}
	k, err := OpenKernel()
	if err != nil {
		tb.Fatal(err)
	}
	defer k.Close()
	_, ids := k.find(nil, []string{"sock_common", "bpf_iter__tcp", "inode"})
	c := &copier{k: k, done: map[btf.TypeID]btf.Type{}}
	for _, name := range []string{"sock_common", "bpf_iter__tcp", "inode"} {
		if len(ids[name]) == 0 {
			continue
		}
		typ, err := c.copy(ids[name][0])
		if err != nil {
			tb.Fatal(err)
		}
		fn := &btf.Func{Name: "bpf_iter_tcp", Type: &btf.FuncProto{Return: u32, Params: []btf.FuncParam{{Name: "ctx", Type: &btf.Pointer{Target: typ}}}}, Linkage: btf.GlobalFunc}
		marshal([]btf.Type{typ, fn})
	}
	return seeds
}
