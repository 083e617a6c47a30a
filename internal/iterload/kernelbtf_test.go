package iterload

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestKernelTypesMatchCilium reads types of the running kernel both ways:
// the IDs Kernel.find gives and the copies copier makes must match what
// cilium/ebpf's full decoding of the same BTF says.
func TestKernelTypesMatchCilium(t *testing.T) {
	full, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("no kernel BTF: %v", err)
	}
	k, err := OpenKernel()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	composites := []string{"task_struct", "file", "sock", "sock_common", "inode", "bpf_iter__task"}
	funcs := []string{"bpf_iter_task", "bpf_iter_tcp", "no_such_function_here"}
	funcIDs, compositeIDs := k.find(funcs, composites)

	for _, name := range funcs[:2] {
		var fn *btf.Func
		if err := full.TypeByName(name, &fn); err != nil {
			t.Fatalf("cilium/ebpf: %s: %v", name, err)
		}
		want, _ := full.TypeID(fn)
		if got := funcIDs[name]; len(got) != 1 || got[0] != want {
			t.Errorf("func %s: IDs %v, want [%d]", name, got, want)
		}
	}
	if got := funcIDs["no_such_function_here"]; got != nil {
		t.Errorf("found a function that does not exist: %v", got)
	}
	if got := compositeIDs["bpf_iter_task"]; got != nil {
		t.Errorf("bpf_iter_task is a struct too, but only asked for as a function: %v", got)
	}

	c := &copier{k: k, done: map[btf.TypeID]btf.Type{}}
	for _, name := range composites {
		var st *btf.Struct
		if err := full.TypeByName(name, &st); err != nil {
			t.Fatalf("cilium/ebpf: %s: %v", name, err)
		}
		want, _ := full.TypeID(st)
		ids := compositeIDs[name]
		if len(ids) != 1 || ids[0] != want {
			t.Fatalf("struct %s: IDs %v, want [%d]", name, ids, want)
		}
		got, err := c.copy(ids[0])
		if err != nil {
			t.Fatalf("copy %s: %v", name, err)
		}
		cp, ok := got.(*btf.Struct)
		if !ok || cp.Name != st.Name || cp.Size != st.Size || len(cp.Members) != len(st.Members) {
			t.Fatalf("copy of %s: %v, want %v", name, got, st)
		}
		for i, m := range st.Members {
			g := cp.Members[i]
			if g.Name != m.Name || g.Offset != m.Offset || g.BitfieldSize != m.BitfieldSize {
				t.Errorf("%s.%s: copied as %s at %d (%d bits), want at %d (%d bits)", name, m.Name, g.Name, g.Offset, g.BitfieldSize, m.Offset, m.BitfieldSize)
			}
			if !sameShape(m.Type, g.Type) {
				t.Errorf("%s.%s: copied type %v, want %v", name, m.Name, g.Type, m.Type)
			}
		}
	}
}

// sameShape compares what CO-RE compares of a member's type: its kind
// and name, an integer's size and encoding, a composite's size; a pointer
// is copied as a pointer to void, so its target is not compared.
func sameShape(want, got btf.Type) bool {
	want, got = btf.UnderlyingType(want), btf.UnderlyingType(got)
	if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) || want.TypeName() != got.TypeName() {
		return false
	}
	switch w := want.(type) {
	case *btf.Int:
		g := got.(*btf.Int)
		return w.Size == g.Size && w.Encoding == g.Encoding
	case *btf.Struct:
		return w.Size == got.(*btf.Struct).Size
	case *btf.Union:
		return w.Size == got.(*btf.Union).Size
	case *btf.Array:
		return w.Nelems == got.(*btf.Array).Nelems && sameShape(w.Type, got.(*btf.Array).Type)
	}
	return true
}

// TestTruncatedBTFRefused: a type section that ends inside a type's
// members is an error, not a copy that reads past it.
func TestTruncatedBTFRefused(t *testing.T) {
	k, err := OpenKernel()
	if err != nil {
		t.Fatal(err)
	}
	raw := append([]byte(nil), k.raw...)
	_, ids := k.find(nil, []string{"task_struct"})
	cut := k.offsets[ids["task_struct"][0]] + 12 // its header, none of its members
	k.Close()
	var h btfHeader
	if _, err := binary.Decode(raw, le, &h); err != nil {
		t.Fatal(err)
	}
	le.PutUint32(raw[12:], cut) // btf_header.type_len
	bad := &Kernel{raw: raw}
	if err := bad.index(); err == nil {
		t.Fatal("indexed a type section that ends inside task_struct's members")
	}
	le.PutUint32(raw[12:], h.TypeLen)
	if err := bad.index(); err != nil {
		t.Fatalf("the whole copy does not index: %v", err)
	}
}
