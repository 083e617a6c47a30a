package main

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// The two fixtures are bpf/holders.bpf.c as of the commit that added this
// tool, compiled by the same clang-19 and bpf2go from checkouts at
// /work/main and /tmp/a/b/c/bindwatch: byte-different (BTF forward
// declarations numbered in another order), the same program.
const (
	shortPath = "testdata/holders_short_path.o"
	deepPath  = "testdata/holders_deep_path.o"
)

// compare describes two objects and returns their difference ("": same).
func compare(t *testing.T, a, b string) string {
	t.Helper()
	da, err := describeObject(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := describeObject(b)
	if err != nil {
		t.Fatal(err)
	}
	return difference(da, db, 10)
}

func TestSameProgramDespiteBTFOrder(t *testing.T) {
	a, _ := os.ReadFile(shortPath)
	b, _ := os.ReadFile(deepPath)
	if bytes.Equal(a, b) {
		t.Fatal("fixtures are byte-identical: they no longer show clang's BTF reordering")
	}
	if diff := compare(t, shortPath, deepPath); diff != "" {
		t.Errorf("same program reported different:\n%s", diff)
	}
}

// An object whose code changed must be reported: flip the immediate of one
// instruction in the iterator program's section.
func TestInstructionChangeIsReported(t *testing.T) {
	changed := filepath.Join(t.TempDir(), "changed.o")
	raw, err := os.ReadFile(shortPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section("iter/task")
	if sec == nil {
		t.Fatal("fixture has no iter/task section")
	}
	// Find a "r0 = imm" (BPF_ALU64|BPF_MOV|BPF_K, opcode 0xb7) and change imm.
	off := -1
	for i := 0; i+8 <= int(sec.Size); i += 8 {
		if raw[int(sec.Offset)+i] == 0xb7 {
			off = int(sec.Offset) + i
			break
		}
	}
	if off < 0 {
		t.Fatal("no mov-immediate instruction in iter/task")
	}
	raw[off+4] ^= 0x40
	if err := os.WriteFile(changed, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	diff := compare(t, shortPath, changed)
	if !strings.Contains(diff, "program socket_owners insn") {
		t.Errorf("changed instruction not reported; difference:\n%s", diff)
	}
}

// A struct whose layout changed must not describe the same.
func TestLayoutChangeIsReported(t *testing.T) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	before := &btf.Struct{Name: "holder_key", Size: 8, Members: []btf.Member{
		{Name: "netns", Type: u32, Offset: 0}, {Name: "port", Type: u32, Offset: 32}}}
	after := &btf.Struct{Name: "holder_key", Size: 8, Members: []btf.Member{
		{Name: "port", Type: u32, Offset: 0}, {Name: "netns", Type: u32, Offset: 32}}}
	if describeType(before, 0) == describeType(after, 0) {
		t.Errorf("swapped members describe the same: %s", describeType(before, 0))
	}
}
