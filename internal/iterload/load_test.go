package iterload

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestSameProgramsAsCilium loads the iterators both ways — iterload
// against the few kernel types they read, cilium/ebpf against the whole
// kernel BTF — and compares the kernel's tags of the loaded programs: the
// tag hashes the instructions the kernel was given, so equal tags mean the
// same CO-RE offsets, bitfield shifts, type IDs and kfunc IDs. A variant
// this kernel lacks must be refused by both.
func TestSameProgramsAsCilium(t *testing.T) {
	testenv.RequireRoot(t)
	// Before 5.11 maps count against RLIMIT_MEMLOCK (LoadIterators raises it too).
	if err := host.RaiseMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, k := itersAndKernel(t)
	loaded := 0
	for _, owner := range []string{SocketOwners, SocketOwnersPerFile} {
		names := []string{owner, itersProgTimewaitSockets}
		fast, err := Load(k, spec, names)
		if errors.Is(err, ErrNotInKernel) {
			t.Logf("%s: %v", owner, err)
			if slow, err := loadWithCilium(spec, names); !errors.Is(err, ebpf.ErrNotSupported) {
				if slow != nil {
					slow.Close()
				}
				t.Errorf("%s: iterload says the kernel lacks it, cilium/ebpf: %v", owner, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: iterload: %v", owner, err)
		}
		slow, err := loadWithCilium(spec, names)
		if err != nil {
			fast.Close()
			t.Fatalf("%s: cilium/ebpf: %v", owner, err)
		}
		for _, name := range names {
			if got, want := tag(t, fast.Programs[name]), tag(t, slow.Programs[name]); got != want {
				t.Errorf("%s: iterload's program has tag %s, cilium/ebpf's %s: the instructions differ", name, got, want)
			}
		}
		if len(fast.Maps) == 0 {
			t.Errorf("%s: no maps created", owner)
		}
		fast.Close()
		slow.Close()
		loaded++
	}
	if loaded == 0 {
		t.Fatal("no socket-owner variant loaded")
	}
}

func loadWithCilium(spec *ebpf.CollectionSpec, names []string) (*ebpf.Collection, error) {
	spec = spec.Copy()
	for name := range spec.Programs {
		if !slices.Contains(names, name) {
			delete(spec.Programs, name)
		}
	}
	return ebpf.NewCollection(spec)
}

func tag(t *testing.T, p *ebpf.Program) string {
	t.Helper()
	if p == nil {
		t.Fatal("program not loaded")
	}
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Tag
}

// TestRefusesWhatItDoesNotHandle: a program that is not an iterator is an
// error (the caller loads it the usual way), not a wrong load.
func TestRefusesWhatItDoesNotHandle(t *testing.T) {
	spec, k := itersAndKernel(t)
	spec = spec.Copy()
	spec.Programs[itersProgTimewaitSockets].AttachType = ebpf.AttachTraceFEntry
	if coll, err := Load(k, spec, []string{itersProgTimewaitSockets}); err == nil {
		coll.Close()
		t.Fatal("loaded an fentry program as an iterator")
	}
	if _, err := Load(k, spec, []string{"no_such_program"}); err == nil {
		t.Fatal("loaded a program that is not in the collection")
	}
}

// itersAndKernel returns the iterator programs (bpf/iters.bpf.c) and the running
// kernel's BTF, closed when the test ends.
func itersAndKernel(t *testing.T) (*ebpf.CollectionSpec, *Kernel) {
	t.Helper()
	spec, err := loadIters()
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return spec, k
}

// TestDescribe pins what describe reads from cilium/ebpf's String() of a
// CO-RE relocation: for every relocation of the iterators, a kind
// Load handles and the local type, a named struct or union.
func TestDescribe(t *testing.T) {
	spec, err := loadIters()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, p := range spec.Programs {
		for i := range p.Instructions {
			relo := btf.CORERelocationMetadata(&p.Instructions[i])
			if relo == nil {
				continue
			}
			n++
			kind, id, err := describe(relo)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			typ, err := spec.Types.TypeByID(id)
			if err != nil {
				t.Fatalf("%s: %v: local type %d: %v", name, relo, id, err)
			}
			switch btf.UnderlyingType(typ).(type) {
			case *btf.Struct, *btf.Union:
			default:
				t.Errorf("%s: %v: local type %v is not a struct or union", name, relo, typ)
			}
			if !strings.Contains(relo.String(), kind) || typ.TypeName() == "" {
				t.Errorf("%s: %v: described as %s on %q", name, relo, kind, typ.TypeName())
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d CO-RE relocations in the iterators", n)
	}
}

// BINDWATCH_ITERLOAD=0 switches Load off: the iterators load through
// cilium/ebpf, and say why.
func TestIterloadSwitch(t *testing.T) {
	testenv.RequireRoot(t)
	t.Setenv("BINDWATCH_ITERLOAD", "0")
	it, err := LoadIterators([]string{SocketOwnersPerFile})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if it.Fallback == nil || !strings.Contains(it.Fallback.Error(), "BINDWATCH_ITERLOAD=0") {
		t.Errorf("iterload error %v: want the switch named", it.Fallback)
	}
}
