package tracer

import (
	"errors"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestHooksDescribed: every program a backend loads, in every mode of
// this kernel and the older ones (the tracepoint backend's paired enters
// before 5.15, io_uring's hook from 6.11), is one of doctor's hooks, named
// by its section in the BPF object, with what it is for, when it fires and
// its cost; and every description is of a program some backend loads.
func TestHooksDescribed(t *testing.T) {
	spec, err := loadBindwatch()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	check := func(b Backend, mode string) {
		t.Helper()
		hooks, err := hookList(b, "tp_btf/kfree_skb")
		if err != nil {
			t.Fatalf("%s %s: %v", b.Name(), mode, err)
		}
		told := map[string]bool{}
		for _, h := range hooks {
			for _, p := range h.progs {
				told[p] = true
				used[p] = true
			}
			if _, ok := hookTexts[h.progs[0]]; !ok || h.For == "" || h.Fires == "" || h.Cost == "" {
				t.Errorf("%s %s: hook %s (program %s) has no description in hookTexts", b.Name(), mode, h.Hook, h.progs[0])
			}
			if want := spec.Programs[h.progs[0]].SectionName; !strings.HasPrefix(h.Hook, want) {
				t.Errorf("%s %s: hook %q, but program %s is in section %q", b.Name(), mode, h.Hook, h.progs[0], want)
			}
		}
		for _, g := range programGroups(b, "tp_btf/kfree_skb") {
			for _, p := range g.progs {
				if !told[p] {
					t.Errorf("%s %s: program %s (attached %s) is no hook of doctor's", b.Name(), mode, p, g.when)
				}
			}
		}
	}
	for _, b := range Backends() {
		check(b, "on this kernel")
	}
	regs, uring := argsInRegs, haveIOUringBind
	defer func() { argsInRegs, haveIOUringBind = regs, uring }()
	for _, paired := range []bool{false, true} {
		for _, iou := range []bool{false, true} {
			argsInRegs = func() bool { return !paired }
			haveIOUringBind = func() bool { return iou }
			check(tracepointBackend{}, "paired "+map[bool]string{false: "no", true: "yes"}[paired]+", io_uring "+map[bool]string{false: "no", true: "yes"}[iou])
		}
	}
	// fentry's implicit hooks depend on the kernel's BTF: those this one
	// lacks are told by name.
	for _, fn := range implicitFuncs {
		used["fexit_"+fn] = true
	}
	for p := range hookTexts {
		if !used[p] {
			t.Errorf("hookTexts describes %s, which no backend loads", p)
		}
	}
}

// TestHooksAreWhatIsAttached: for the backend under test, on this kernel,
// the programs a real tracer loads are doctor's hooks, those it attaches
// at start are the hooks attached always (or unless --no-holders, or with
// --follow-children), and an incident attaches the ones said to be
// attached during incidents — asked of the kernel, link by link.
func TestHooksAreWhatIsAttached(t *testing.T) {
	testenv.RequireRoot(t)
	tr, err := Open(Config{Backend: testenv.Backend(), Ports: []PortRange{{Lo: 1, Hi: 1}}, PIDs: []uint32{uint32(os.Getpid())}, FollowChildren: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	hooks, err := hookList(tr.backend, tr.impactSource)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	var all []string
	for _, h := range hooks {
		when := h.Attached
		if when == events.HookUnlessNoHolders || when == events.HookFollowChildren {
			when = events.HookAlways // this config attaches both
		}
		for _, p := range h.progs {
			if p == lineageProgram && tr.LineageErr != nil || p == tr.backend.udpReleaseProgram() && !tr.udpReleases {
				t.Logf("%s not attached on this kernel (optional)", p)
				continue
			}
			want[when] = append(want[when], p)
		}
		all = append(all, h.progs...)
	}

	var loaded []string
	ids := map[ebpf.ProgramID]string{}
	for name, p := range tr.coll.Programs {
		if name == seedProgram {
			continue // an iterator, run once: no hook
		}
		loaded = append(loaded, name)
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		ids[id] = name
	}
	same(t, "loaded programs", loaded, all)

	attached := func(links []link.Link) []string {
		var names []string
		for _, l := range links {
			info, err := l.Info()
			if errors.Is(err, ebpf.ErrNotSupported) || err != nil && strings.Contains(err.Error(), "perf event link info") {
				// A kernel that cannot say a perf event link's program
				// (before 6.6): count them.
				names = append(names, "?")
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, ids[info.Program])
		}
		return names
	}
	same(t, "attached at start, backend "+tr.backend.Name(), attached(tr.links), want[events.HookAlways])

	ns, err := host.NetnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := tr.WatchPort(PortKey{Netns: ns, Proto: "tcp", Port: 1}, 0, nil); !ok || err != nil {
		t.Fatalf("WatchPort: %v %v", ok, err)
	}
	tr.hooks.mu.Lock()
	during := attached(tr.hooks.links)
	tr.hooks.mu.Unlock()
	same(t, "attached during an incident", during, want[events.HookDuringIncidents])
}

// same compares two lists of program names as sets; "?" in got (a link
// whose program the kernel does not say) matches any one name.
func same(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Clone(got), slices.Clone(want)
	sort.Strings(got)
	sort.Strings(want)
	unknown := 0
	var named []string
	for _, g := range got {
		if g == "?" {
			unknown++
		} else {
			named = append(named, g)
		}
	}
	missing := 0
	for _, w := range want {
		if !slices.Contains(named, w) {
			missing++
		}
	}
	for _, g := range named {
		if !slices.Contains(want, g) {
			t.Errorf("%s: %s is not among doctor's hooks %v", what, g, want)
		}
	}
	if missing != unknown || len(got) != len(want) {
		t.Errorf("%s: %v, doctor's hooks say %v", what, got, want)
	}
}
