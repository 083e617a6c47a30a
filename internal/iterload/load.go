// Package iterload owns bindwatch's BPF iterators (bpf/iters.bpf.c: the
// owners of sockets, the flags of TIME_WAIT sockets) and loads them against
// only the kernel types they read. LoadIterators is all resolve calls; the
// generated types stay in this package.
//
// cilium/ebpf finds an iterator's attach point, its kfuncs and its CO-RE
// targets in the kernel's BTF by decoding the whole of it: indexing its
// ~127,000 types and inflating everything task_struct reaches takes ~20 ms,
// most of a one-shot `bindwatch who`. The iterators need a few dozen types
// and three IDs. Load reads those straight from /sys/kernel/btf/vmlinux (one
// pass over the type headers), relocates the programs against copies of
// just those types with cilium/ebpf's own CO-RE code, and loads them itself
// (BPF_PROG_LOAD needs the attach point's BTF ID, which cilium/ebpf takes
// only from the full decoding). Maps are created, and the loaded programs
// used, through cilium/ebpf as usual.
//
// Load covers what bindwatch's iterators use: CO-RE field and type-ID
// relocations, kfunc calls into vmlinux, maps. Anything else is an error,
// and LoadIterators loads them the usual way.
//
// BINDWATCH_ITERLOAD=0 in the environment makes LoadIterators skip Load
// and load the iterators through cilium/ebpf: a way round a kernel whose
// BTF this package misreads, without a new build (TestIterloadSwitch shows
// that path taken). The BTF reader is fuzzed (FuzzKernelBTF; make fuzz,
// run by make test).
package iterload

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// ErrNotInKernel: the kernel's BTF lacks an attach point or kfunc a program
// needs, so this kernel cannot load it whoever loads it. It wraps
// ebpf.ErrNotSupported.
var ErrNotInKernel = fmt.Errorf("not in the kernel's BTF: %w", ebpf.ErrNotSupported)

// program is one program of the spec on its way to the kernel.
type program struct {
	name   string
	spec   *ebpf.ProgramSpec
	insns  asm.Instructions
	relos  []relocation
	kfuncs map[*asm.Instruction]string
}

// relocation is a CO-RE relocation of one instruction.
type relocation struct {
	ins      *asm.Instruction
	relo     *btf.CORERelocation
	kind     string // as cilium/ebpf names it: "byte_off", "target_type_id"…
	typeName string // the local type's essential name
}

// Load loads the named tracing iterator programs of spec, with the maps
// they reference, against the kernel's BTF k, and returns them as one
// Collection (its Maps hold only those maps).
func Load(k *Kernel, spec *ebpf.CollectionSpec, names []string) (*ebpf.Collection, error) {
	var progs []*program
	var composites, funcs []string
	for _, name := range names {
		p, err := prepare(spec, name)
		if err != nil {
			return nil, fmt.Errorf("program %s: %w", name, err)
		}
		progs = append(progs, p)
		for _, r := range p.relos {
			composites = append(composites, r.typeName)
		}
		funcs = append(funcs, "bpf_iter_"+p.spec.AttachTo)
		for _, f := range p.kfuncs {
			funcs = append(funcs, f)
		}
	}

	funcIDs, compositeIDs := k.find(funcs, composites)
	target, kernelIDs, err := reducedSpec(k, compositeIDs)
	if err != nil {
		return nil, err
	}

	coll := &ebpf.Collection{Programs: map[string]*ebpf.Program{}, Maps: map[string]*ebpf.Map{}}
	for _, p := range progs {
		if err := p.relocate(target, kernelIDs, funcIDs); err != nil {
			coll.Close()
			return nil, fmt.Errorf("program %s: %w", p.name, err)
		}
		if err := p.associateMaps(spec, coll.Maps); err != nil {
			coll.Close()
			return nil, fmt.Errorf("program %s: %w", p.name, err)
		}
		attachID, err := onlyID(funcIDs, "bpf_iter_"+p.spec.AttachTo)
		if err != nil {
			coll.Close()
			return nil, fmt.Errorf("program %s: attach point: %w", p.name, err)
		}
		prog, err := p.load(attachID)
		if err != nil {
			coll.Close()
			return nil, fmt.Errorf("program %s: %w", p.name, err)
		}
		coll.Programs[p.name] = prog
	}
	return coll, nil
}

// prepare copies the program's instructions and notes its CO-RE
// relocations and kfunc calls.
func prepare(spec *ebpf.CollectionSpec, name string) (*program, error) {
	ps := spec.Programs[name]
	if ps == nil {
		return nil, errors.New("not in the collection")
	}
	if ps.Type != ebpf.Tracing || ps.AttachType != ebpf.AttachTraceIter || ps.AttachTo == "" {
		return nil, fmt.Errorf("not an iterator (%s/%s)", ps.Type, ps.AttachType)
	}
	p := &program{name: name, spec: ps, insns: make(asm.Instructions, len(ps.Instructions)), kfuncs: map[*asm.Instruction]string{}}
	copy(p.insns, ps.Instructions)
	for i := range p.insns {
		ins := &p.insns[i]
		if ins.IsKfuncCall() {
			if ins.Reference() == "" {
				return nil, fmt.Errorf("instruction %d: kfunc call without a name", i)
			}
			p.kfuncs[ins] = ins.Reference()
		}
		relo := btf.CORERelocationMetadata(ins)
		if relo == nil {
			continue
		}
		kind, localID, err := describe(relo)
		if err != nil {
			return nil, fmt.Errorf("instruction %d: %w", i, err)
		}
		local, err := spec.Types.TypeByID(localID)
		if err != nil {
			return nil, fmt.Errorf("instruction %d: local type of %v: %w", i, relo, err)
		}
		local = btf.UnderlyingType(local)
		switch local.(type) {
		case *btf.Struct, *btf.Union:
		default:
			return nil, fmt.Errorf("instruction %d: relocation against %v: only structs and unions are handled", i, local)
		}
		typeName, _, _ := strings.Cut(local.TypeName(), "___") // the essential name
		p.relos = append(p.relos, relocation{ins: ins, relo: relo, kind: kind, typeName: typeName})
	}
	return p, nil
}

// describe returns the kind and local type ID of a relocation.
// cilium/ebpf keeps both unexported; its String() is
// "CORERelocation(KIND, TYPE[ACCESSOR], local_id=ID)". A format it does
// not recognise is an error, and the caller loads the usual way
// (TestDescribe pins the format).
func describe(relo *btf.CORERelocation) (kind string, localID btf.TypeID, err error) {
	s := relo.String()
	rest, ok := strings.CutPrefix(s, "CORERelocation(")
	kind, _, ok2 := strings.Cut(rest, ", ")
	i := strings.LastIndex(s, "local_id=")
	if !ok || !ok2 || i < 0 || !strings.HasSuffix(s, ")") {
		return "", 0, fmt.Errorf("unrecognised CO-RE relocation %q", s)
	}
	id, err := strconv.ParseUint(s[i+len("local_id="):len(s)-1], 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("unrecognised CO-RE relocation %q", s)
	}
	switch kind {
	case "byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64", "target_type_id":
	default:
		return "", 0, fmt.Errorf("CO-RE relocation %q: kind %s is not handled", s, kind)
	}
	return kind, btf.TypeID(id), nil
}

// reducedSpec copies the kernel's composites ids (by name; and what they
// hold by value) into a Spec for CO-RE, and returns with it each name's
// kernel type ID where there is one, for type-ID relocations, which must
// carry the kernel's numbering.
func reducedSpec(k *Kernel, ids map[string][]btf.TypeID) (*btf.Spec, map[string]btf.TypeID, error) {
	c := &copier{k: k, done: map[btf.TypeID]btf.Type{}}
	var roots []btf.Type
	kernelIDs := map[string]btf.TypeID{}
	for _, name := range slices.Sorted(maps.Keys(ids)) {
		list := ids[name]
		if len(list) == 1 {
			kernelIDs[name] = list[0]
		}
		for _, id := range list {
			t, err := c.copy(id)
			if err != nil {
				return nil, nil, fmt.Errorf("copy kernel type %s: %w", name, err)
			}
			roots = append(roots, t)
		}
	}
	b, err := btf.NewBuilder(roots, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel types for CO-RE: %w", err)
	}
	s, err := b.Spec()
	if err != nil {
		return nil, nil, fmt.Errorf("kernel types for CO-RE: %w", err)
	}
	return s, kernelIDs, nil
}

// relocate applies the CO-RE relocations against target and puts the
// kernel's IDs into type-ID relocations and kfunc calls.
func (p *program) relocate(target *btf.Spec, kernelIDs map[string]btf.TypeID, funcIDs map[string][]btf.TypeID) error {
	if len(p.relos) > 0 {
		relos := make([]*btf.CORERelocation, len(p.relos))
		for i, r := range p.relos {
			relos[i] = r.relo
		}
		var local btf.Builder
		fixups, err := btf.CORERelocate(relos, []*btf.Spec{target}, p.spec.ByteOrder, local.Add)
		if err != nil {
			return fmt.Errorf("apply CO-RE relocations: %w", err)
		}
		for i, f := range fixups {
			r := p.relos[i]
			if err := f.Apply(r.ins); err != nil {
				return fmt.Errorf("apply %v: %w", r.relo, err)
			}
			if r.kind == "target_type_id" {
				// The fixup carries target's numbering; the kernel wants its own.
				id, ok := kernelIDs[r.typeName]
				if !ok {
					return fmt.Errorf("%v: no single kernel type %s", r.relo, r.typeName)
				}
				r.ins.Constant = int64(id)
			}
		}
	}
	for ins, name := range p.kfuncs {
		id, err := onlyID(funcIDs, name)
		if err != nil {
			return fmt.Errorf("kfunc: %w", err)
		}
		ins.Constant = int64(id)
		ins.Offset = 0 // in vmlinux, not in a module's BTF
	}
	return nil
}

// onlyID returns the one kernel type ID of name, ErrNotInKernel if there
// is none.
func onlyID(ids map[string][]btf.TypeID, name string) (btf.TypeID, error) {
	switch list := ids[name]; len(list) {
	case 0:
		return 0, fmt.Errorf("%s: %w", name, ErrNotInKernel)
	case 1:
		return list[0], nil
	default:
		return 0, fmt.Errorf("%s is in the kernel's BTF %d times", name, len(list))
	}
}

// associateMaps creates (once, in maps) every map the program references
// and points its instructions at them.
func (p *program) associateMaps(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map) error {
	for i := range p.insns {
		ins := &p.insns[i]
		if !ins.IsLoadFromMap() || ins.Reference() == "" {
			continue
		}
		name := ins.Reference()
		m := maps[name]
		if m == nil {
			ms := spec.Maps[name]
			if ms == nil {
				return fmt.Errorf("instruction %d: map %s is not in the collection", i, name)
			}
			var err error
			if m, err = ebpf.NewMap(ms); err != nil {
				return fmt.Errorf("create map %s: %w", name, err)
			}
			maps[name] = m
		}
		if err := ins.AssociateMap(m); err != nil {
			return fmt.Errorf("instruction %d: map %s: %w", i, name, err)
		}
	}
	return nil
}

// progLoadAttr is the start of union bpf_attr for BPF_PROG_LOAD
// (include/uapi/linux/bpf.h), up to attach_btf_obj_fd (5.11; older kernels
// accept it while it is zero). The kernel reads a shorter attr as if the
// rest were zero.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [unix.BPF_OBJ_NAME_LEN]byte
	progIfindex        uint32
	expectedAttachType uint32
	progBTFFd          uint32
	funcInfoRecSize    uint32
	funcInfo           uint64
	funcInfoCnt        uint32
	lineInfoRecSize    uint32
	lineInfo           uint64
	lineInfoCnt        uint32
	attachBTFID        uint32
	attachBTFObjFd     uint32
	_                  uint32
}

// load hands the relocated program to the kernel, attached to the
// iterator whose BTF ID is attachID, and wraps it for cilium/ebpf.
func (p *program) load(attachID btf.TypeID) (*ebpf.Program, error) {
	var buf bytes.Buffer
	if err := p.insns.Marshal(&buf, p.spec.ByteOrder); err != nil {
		return nil, fmt.Errorf("encode instructions: %w", err)
	}
	code := buf.Bytes()
	// The verifier wants BTF func_info for subprograms (bpf_loop's
	// callback); line info makes its log readable.
	shallowFuncs(p.insns)
	var b btf.Builder
	funcInfo, lineInfo, err := btf.MarshalExtInfos(p.insns, &b)
	if err != nil {
		return nil, fmt.Errorf("encode func and line info: %w", err)
	}
	handle, err := btf.NewHandle(&b)
	if err != nil {
		return nil, fmt.Errorf("load program BTF: %w", err)
	}
	defer handle.Close()
	license := append([]byte(p.spec.License), 0)
	attr := progLoadAttr{
		progType:           unix.BPF_PROG_TYPE_TRACING,
		insnCnt:            uint32(len(code) / asm.InstructionSize),
		insns:              uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		expectedAttachType: unix.BPF_TRACE_ITER,
		attachBTFID:        uint32(attachID),
		progBTFFd:          uint32(handle.FD()),
		funcInfoRecSize:    btf.FuncInfoSize,
		funcInfoCnt:        uint32(len(funcInfo)) / btf.FuncInfoSize,
		lineInfoRecSize:    btf.LineInfoSize,
		lineInfoCnt:        uint32(len(lineInfo)) / btf.LineInfoSize,
	}
	if len(funcInfo) > 0 {
		attr.funcInfo = uint64(uintptr(unsafe.Pointer(&funcInfo[0])))
	}
	if len(lineInfo) > 0 {
		attr.lineInfo = uint64(uintptr(unsafe.Pointer(&lineInfo[0])))
	}
	copy(attr.progName[:unix.BPF_OBJ_NAME_LEN-1], objName(p.name))
	fd, err := progLoad(&attr)
	if err != nil {
		// Once more with the verifier's log, for the error.
		log := make([]byte, 64<<10)
		attr.logLevel, attr.logSize = 1, uint32(len(log))
		attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
		if _, err2 := progLoad(&attr); err2 != nil {
			err = fmt.Errorf("%w: %s", err, lastLines(log, 3))
		}
		runtime.KeepAlive(log)
	}
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	runtime.KeepAlive(funcInfo)
	runtime.KeepAlive(lineInfo)
	if err != nil {
		return nil, fmt.Errorf("load into the kernel: %w", err)
	}
	prog, err := ebpf.NewProgramFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("wrap loaded program: %w", err)
	}
	return prog, nil
}

// shallowFuncs replaces the BTF of the program and of its static
// functions with prototypes whose pointer parameters point to void. The
// verifier reads their prototypes for shape only: it checks argument types
// against BTF for global subprograms and freplace programs, and gives a
// tracing program's entry its context from the attach point. The full
// prototypes drag task_struct's whole graph into the program's BTF.
func shallowFuncs(insns asm.Instructions) {
	for i := range insns {
		fn := btf.FuncMetadata(&insns[i])
		if fn == nil || (i > 0 && fn.Linkage == btf.GlobalFunc) {
			continue
		}
		proto, ok := fn.Type.(*btf.FuncProto)
		if !ok {
			continue
		}
		shallow := &btf.FuncProto{Return: proto.Return, Params: make([]btf.FuncParam, len(proto.Params))}
		for j, param := range proto.Params {
			shallow.Params[j] = param
			if _, isPtr := btf.UnderlyingType(param.Type).(*btf.Pointer); isPtr {
				shallow.Params[j].Type = &btf.Pointer{Target: (*btf.Void)(nil)}
			}
		}
		copyFn := *fn
		copyFn.Type = shallow
		insns[i] = btf.WithFuncMetadata(insns[i], &copyFn)
	}
}

func progLoad(attr *progLoadAttr) (int, error) {
	fd, err := bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(attr), unsafe.Sizeof(*attr))
	if err != nil {
		return -1, fmt.Errorf("bpf(BPF_PROG_LOAD): %w", err)
	}
	return fd, nil
}

// bpfCall is the bpf(2) syscall cmd with attr (size bytes), for what
// cilium/ebpf does otherwise (progLoad, objInfo, progInfo).
func bpfCall(cmd uintptr, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// objName keeps the characters the kernel accepts in an object name.
func objName(name string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return -1
	}, name)
}

// lastLines returns the last n lines of a NUL-terminated log.
func lastLines(log []byte, n int) string {
	if i := bytes.IndexByte(log, 0); i >= 0 {
		log = log[:i]
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "; ")
}
