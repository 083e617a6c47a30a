// Command samebpf tells whether two BPF ELF objects are the same program:
// the same programs (instructions, references, CO-RE relocations, line
// info), maps, global variables and BTF types, whatever order clang emitted
// the BTF types in.
//
// `make check-generated` needs it because clang is not byte-for-byte
// reproducible for BPF: LLVM's BTF emitter orders the forward declarations
// it fixes up by pointer address, so the same source compiled from a
// checkout at another path (different argument lengths, different heap
// layout) can number its BTF types differently. Comparing bytes then
// reports a fresh object as stale; comparing what the object means does not.
//
// Usage: samebpf COMMITTED.o REGENERATED.o
// Exit status 0: same; 1: different (the first differences are printed);
// 2: an object could not be read.
package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: samebpf COMMITTED.o REGENERATED.o")
		os.Exit(2)
	}
	a, err := describeObject(os.Args[1])
	if err == nil {
		var b []string
		if b, err = describeObject(os.Args[2]); err == nil {
			if diff := difference(a, b, 10); diff != "" {
				fmt.Printf("samebpf: %s and %s differ:\n%s", os.Args[1], os.Args[2], diff)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintln(os.Stderr, "samebpf:", err)
	os.Exit(2)
}

// describeObject renders everything that matters about a BPF object as
// lines that do not depend on BTF type IDs, sorted where the ELF order is
// not meaningful.
func describeObject(path string) ([]string, error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return nil, fmt.Errorf("read BPF object %s: %w", path, err)
	}
	var lines []string

	for _, name := range sortedKeys(spec.Programs) {
		p := spec.Programs[name]
		lines = append(lines, fmt.Sprintf("program %s type=%v attach=%v to=%q section=%q license=%q",
			name, p.Type, p.AttachType, p.AttachTo, p.SectionName, p.License))
		for i, ins := range p.Instructions {
			lines = append(lines, fmt.Sprintf("program %s insn %d: %s", name, i, describeInstruction(ins)))
		}
	}
	for _, name := range sortedKeys(spec.Maps) {
		lines = append(lines, describeMap(spec.Maps[name]))
	}
	for _, name := range sortedKeys(spec.Variables) {
		v := spec.Variables[name]
		var typ string
		if v.Type != nil {
			typ = describeType(v.Type, 0)
		}
		lines = append(lines, fmt.Sprintf("variable %s section=%q offset=%d value=%x type=%s",
			name, v.SectionName, v.Offset, v.Value, typ))
	}
	if spec.Types != nil {
		var types []string
		for t, err := range spec.Types.All() {
			if err != nil {
				return nil, fmt.Errorf("read BTF of %s: %w", path, err)
			}
			types = append(types, "type "+describeType(t, 0))
		}
		slices.Sort(types)
		lines = append(lines, types...)
	}
	return lines, nil
}

// localID is the only type-ID-dependent part of a CO-RE relocation's text.
var localID = regexp.MustCompile(`local_id=\d+`)

func describeInstruction(ins asm.Instruction) string {
	s := fmt.Sprintf("%v", ins)
	if sym := ins.Symbol(); sym != "" {
		s += " symbol=" + sym
	}
	if ref := ins.Reference(); ref != "" {
		s += " reference=" + ref
	}
	if fn := btf.FuncMetadata(&ins); fn != nil {
		s += " func=" + describeType(fn, 0)
	}
	if relo := btf.CORERelocationMetadata(&ins); relo != nil {
		s += " core=" + localID.ReplaceAllString(relo.String(), "")
	}
	if src := ins.Source(); src != nil {
		s += fmt.Sprintf(" line=%q", src.String())
	}
	return s
}

func describeMap(m *ebpf.MapSpec) string {
	s := fmt.Sprintf("map %s type=%v key=%d value=%d entries=%d flags=%#x pinning=%v contents=%v",
		m.Name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, m.Pinning, m.Contents)
	if m.Key != nil {
		s += " key_type=" + describeType(m.Key, 0)
	}
	if m.Value != nil {
		s += " value_type=" + describeType(m.Value, 0)
	}
	if m.InnerMap != nil {
		s += " inner=(" + describeMap(m.InnerMap) + ")"
	}
	return s
}

// maxDepth bounds the expansion of anonymous types nested in one another;
// named types are referred to by kind and name, never expanded inline.
const maxDepth = 16

// describeType renders t without type IDs: named types referenced from t
// appear as kind:name, anonymous ones are expanded in place.
func describeType(t btf.Type, depth int) string {
	if depth > maxDepth {
		return "…"
	}
	ref := func(t btf.Type) string { return referTo(t, depth+1) }
	switch t := t.(type) {
	case *btf.Void:
		return "void"
	case *btf.Int:
		return fmt.Sprintf("int %q size=%d enc=%v", t.Name, t.Size, t.Encoding)
	case *btf.Float:
		return fmt.Sprintf("float %q size=%d", t.Name, t.Size)
	case *btf.Pointer:
		return "ptr(" + ref(t.Target) + ")"
	case *btf.Array:
		return fmt.Sprintf("array(%s)[%d] index=%s", ref(t.Type), t.Nelems, ref(t.Index))
	case *btf.Struct:
		return composite("struct", t.Name, t.Size, t.Members, ref)
	case *btf.Union:
		return composite("union", t.Name, t.Size, t.Members, ref)
	case *btf.Enum:
		var b strings.Builder
		fmt.Fprintf(&b, "enum %q size=%d signed=%v {", t.Name, t.Size, t.Signed)
		for _, v := range t.Values {
			fmt.Fprintf(&b, " %s=%d", v.Name, v.Value)
		}
		return b.String() + " }"
	case *btf.Fwd:
		return fmt.Sprintf("fwd %q kind=%v", t.Name, t.Kind)
	case *btf.Typedef:
		return fmt.Sprintf("typedef %q = %s", t.Name, ref(t.Type))
	case *btf.Volatile:
		return "volatile(" + ref(t.Type) + ")"
	case *btf.Const:
		return "const(" + ref(t.Type) + ")"
	case *btf.Restrict:
		return "restrict(" + ref(t.Type) + ")"
	case *btf.TypeTag:
		return fmt.Sprintf("type_tag %q (%s)", t.Value, ref(t.Type))
	case *btf.Func:
		return fmt.Sprintf("func %q linkage=%v proto=%s", t.Name, t.Linkage, ref(t.Type))
	case *btf.FuncProto:
		var b strings.Builder
		b.WriteString("proto(")
		for _, p := range t.Params {
			fmt.Fprintf(&b, "%s %s, ", p.Name, ref(p.Type))
		}
		return b.String() + ") " + ref(t.Return)
	case *btf.Var:
		return fmt.Sprintf("var %q linkage=%v type=%s", t.Name, t.Linkage, ref(t.Type))
	case *btf.Datasec:
		var b strings.Builder
		fmt.Fprintf(&b, "datasec %q size=%d {", t.Name, t.Size)
		for _, v := range t.Vars {
			fmt.Fprintf(&b, " %s@%d+%d", ref(v.Type), v.Offset, v.Size)
		}
		return b.String() + " }"
	default:
		return fmt.Sprintf("%T %v", t, t)
	}
}

func composite(kind, name string, size uint32, members []btf.Member, ref func(btf.Type) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q size=%d {", kind, name, size)
	for _, m := range members {
		fmt.Fprintf(&b, " %s@%d:%d %s;", m.Name, m.Offset, m.BitfieldSize, ref(m.Type))
	}
	return b.String() + " }"
}

// referTo names a type the way a reference to it should read: a named
// struct, union, enum, typedef or forward declaration by kind and name (its
// own line describes it), anything else expanded.
func referTo(t btf.Type, depth int) string {
	switch t.(type) {
	case *btf.Struct, *btf.Union, *btf.Enum, *btf.Typedef, *btf.Fwd, *btf.Int, *btf.Float, *btf.Func, *btf.Var, *btf.Datasec:
		if name := t.TypeName(); name != "" {
			return fmt.Sprintf("%s:%s", kindOf(t), name)
		}
	}
	return describeType(t, depth)
}

func kindOf(t btf.Type) string {
	s := fmt.Sprintf("%T", t)
	return strings.ToLower(strings.TrimPrefix(s, "*btf."))
}

// difference lists up to max lines only in a and only in b, or "" when the
// two descriptions are equal.
func difference(a, b []string, max int) string {
	if slices.Equal(a, b) {
		return ""
	}
	var out strings.Builder
	n := 0
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x == y {
			continue
		}
		fmt.Fprintf(&out, "- %s\n+ %s\n", x, y)
		if n++; n == max {
			out.WriteString("…\n")
			break
		}
	}
	return out.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
