package tracer

import (
	"fmt"
	"strings"
	"sync"

	"github.com/bindwatch/bindwatch/internal/events"
)

// progGroup is programs of the BPF object a backend loads, and when they
// are attached (events.HookAlways, ...).
type progGroup struct {
	when  string
	progs []string
}

// programGroups are the programs openBackend loads for backend b, grouped
// by when they are attached: the one list the loader keeps and doctor's
// Hooks describes. impact is impactSource()'s answer ("" leaves the client
// impact counter out). The holder seed (an iterator run once at start, no
// hook) is not here.
func programGroups(b Backend, impact string) []progGroup {
	always := b.Programs()
	if r := b.udpReleaseProgram(); r != "" {
		always = append(always, r)
	}
	var incident []string
	for _, tp := range incidentTracepoints {
		incident = append(incident, tp.prog)
	}
	if impact != "" {
		incident = append(incident, impactProgram)
	}
	return []progGroup{
		{events.HookAlways, always},
		{events.HookUnlessNoHolders, []string{lineageProgram}},
		{events.HookDuringIncidents, incident},
		{events.HookFollowChildren, followPrograms},
	}
}

// loaded says whether cfg loads the programs attached at when.
func loaded(when string, cfg Config) bool {
	switch when {
	case events.HookUnlessNoHolders:
		return !cfg.NoHolders
	case events.HookFollowChildren:
		return cfg.FollowChildren
	}
	return true
}

// hookText is what doctor says of one program's hook.
type hookText struct{ what, fires, cost string }

// The costs, from README.md's Speed section (make bench).
const (
	costSyscallSlowPath = "every syscall of every task on the host takes the kernel's slow path while any syscall tracepoint is attached (one price for all of them), the kernel's floor, not bindwatch's program: getppid() measured 1.18× and a 1-byte pipe read 1.09× with the tracepoint enabled and no program at all, 1.19–1.20× and 1.11× with bindwatch running (kernel 6.18, 2026-12-07)"
	costTPBind          = "the syscall slow path (see the backend's cost), and on bind() itself: a failing bind() 1.56–1.63× (its address read from user memory, the storm folded), a succeeding UDP bind() 1.11–1.41× (its holder recorded), TCP 1.08–1.22×, UDP with --no-holders 1.06–1.17×; an empty program on sys_exit_bind alone costs a failing bind() 1.25× and a succeeding one 1.10× (kernel 6.18, two machines; the higher figures under the Safe RET mitigation)"
	costTPOther         = "the syscall slow path (see the backend's cost); the program itself returns at its first comparison unless the call failed with an error it traces"
	costTPEnter         = "the syscall slow path on entry too (every syscall's entry is checked); the program stashes the call's arguments for its exit (kernels before 5.15)"
	costFexit           = "only this function's calls pay, through a BPF trampoline; the program returns at its first comparison unless the call failed with an error it traces"
	costFexitBind       = "only bind() pays, through a BPF trampoline: a failing bind() 1.45–1.56×, a succeeding UDP bind() 1.64–2.70×, TCP 1.56–1.78× (qemu 5.10–6.12, emulated by TCG: compares backends, not real CPUs)"
	costTPListen        = "the syscall slow path (see the backend's cost); a successful listen() has its socket looked up from the fd and recorded as a holder unless --no-holders (not measured by make bench)"
	costFexitListen     = "only listen() pays, through a BPF trampoline; a successful one has its socket recorded as a holder unless --no-holders (not measured by make bench)"
	costKprobeListen    = "only listen() pays, through a kprobe and a kretprobe; a successful one has its socket recorded as a holder unless --no-holders (not measured by make bench)"
	costFexitSend       = "every send on such a socket pays, through a BPF trampoline; the program returns at its first comparison unless the send failed with EAGAIN (not measured by make bench)"
	costKprobe          = "only this function's calls pay, each through a kprobe and a kretprobe (the arguments stashed per thread between them), dearer than fexit"
	costKprobeBind      = "only bind() pays, through a kprobe and a kretprobe: a failing bind() 2.93–3.00×, a succeeding UDP bind() 2.98–3.69×, TCP 2.01–2.71× (qemu 5.10–6.12, emulated by TCG: compares backends, not real CPUs)"
	costUnhash          = "only UDP sockets closing pay: an early return, or while an incident is open a look-up in the incident table (not measured by make bench)"
	costSockState       = "the host's TCP connections pay during an incident only: a loopback connect/accept/close churn measured 1.03–1.06× (kernel 6.18), an empty program 1.03–1.08× (the kernel's floor); nothing while no incident is open"
	costSignal          = "the host's signals pay during an incident only: an ignored signal 1.07–1.11×, SIGTERM 1.12–1.16× (kernel 6.18), an empty program 1.05–1.09× (the kernel's floor); nothing while no incident is open"
	costKfreeSkb        = "during an incident only: a dropped packet pays an early return, one at the incident's port a hash update; a refused connect() under a SYN flood measured 1.02–1.05× (medians of three runs, kernel 6.18; an empty program 0.97–1.01×); nothing while no incident is open"
	costExit            = "every process exit pays a look-up in a hash table (not measured by make bench)"
	costFollowExit      = "every process exit pays a delete from a hash table (not measured by make bench)"
	costFork            = "every fork pays a look-up in a hash table (not measured by make bench)"
	costIOUring         = "every io_uring completion on the host pays a check of its opcode (not measured by make bench)"
)

// hookTexts describes every program of the object that a backend
// attaches; a program missing here is a test failure (TestHooksDescribed).
var hookTexts = map[string]hookText{
	// tracepoint backend
	"tp_exit_bind":     {"bind() failures, and successful binds (holders)", "every bind() return", costTPBind},
	"tp_exit_listen":   {"listen() failures, and successful listens (holders)", "every listen() return", costTPListen},
	"tp_exit_connect":  {"implicit binds: connect() that found no local port", "every connect() return", costTPOther},
	"tp_exit_sendto":   {"implicit binds: UDP sendto() that found no local port", "every sendto() return", costTPOther},
	"tp_exit_sendmsg":  {"implicit binds: UDP sendmsg() that found no local port", "every sendmsg() return", costTPOther},
	"tp_enter_bind":    {"bind()'s arguments, for its exit", "every bind() entry", costTPEnter},
	"tp_enter_listen":  {"listen()'s fd, for its exit", "every listen() entry", costTPEnter},
	"tp_enter_connect": {"connect()'s arguments, for its exit", "every connect() entry", costTPEnter},
	"tp_enter_sendto":  {"sendto()'s address, for its exit", "every sendto() entry", costTPEnter},
	ioUringProgram:     {"io_uring's binds and listens (IORING_OP_BIND, IORING_OP_LISTEN), which pass no syscall", "every io_uring request's completion", costIOUring},

	// fentry backend
	"fexit_inet_bind":          {"bind() failures and successful binds of IPv4 sockets (io_uring's too)", "every return of inet_bind", costFexitBind},
	"fexit_inet6_bind":         {"bind() failures and successful binds of IPv6 sockets (io_uring's too)", "every return of inet6_bind", costFexitBind},
	"fexit_inet_listen":        {"listen() failures and successful listens", "every return of inet_listen", costFexitListen},
	"fexit_inet_hash_connect":  {"implicit binds: TCP connect() that found no local port", "every return of inet_hash_connect (a TCP connect())", costFexit},
	"fexit_inet_dgram_connect": {"implicit binds: UDP connect() that found no local port", "every return of inet_dgram_connect (a connect() of a datagram socket)", costFexit},
	"fexit_inet_sendmsg":       {"implicit binds: UDP sendto()/sendmsg() that found no local port (IPv4)", "every return of inet_sendmsg (every send on an IPv4 socket, TCP or UDP)", costFexitSend},
	"fexit_inet6_sendmsg":      {"implicit binds: UDP sendto()/sendmsg() that found no local port (IPv6)", "every return of inet6_sendmsg (every send on an IPv6 socket, TCP or UDP)", costFexitSend},
	"fentry_" + udpUnhash:      {"a UDP holder leaving a port with an open incident (released records)", "every UDP socket's close (udp_lib_unhash)", costUnhash},

	// kprobe backend: the pairs' kprobe halves, the kretprobes are told with them
	"kprobe_inet_bind":          {"bind() failures and successful binds of IPv4 sockets (io_uring's too)", "every call of inet_bind", costKprobeBind},
	"kprobe_inet6_bind":         {"bind() failures and successful binds of IPv6 sockets (io_uring's too)", "every call of inet6_bind", costKprobeBind},
	"kprobe_inet_listen":        {"listen() failures and successful listens", "every call of inet_listen", costKprobeListen},
	"kprobe_inet_hash_connect":  {"implicit binds: TCP connect() that found no local port", "every call of inet_hash_connect (a TCP connect())", costKprobe},
	"kprobe_inet_dgram_connect": {"implicit binds: UDP connect() that found no local port", "every call of inet_dgram_connect (a connect() of a datagram socket)", costKprobe},
	"kprobe_" + udpUnhash:       {"a UDP holder leaving a port with an open incident (released records)", "every UDP socket's close (udp_lib_unhash)", costUnhash},

	// every backend
	lineageProgram:        {"how the processes that took a port ended (the diagnosis)", "every process exit", costExit},
	"incident_sock_state": {"released records: an incident port's TCP listener closing", "every TCP state change on the host", costSockState},
	"incident_signal":     {"incident records: stop signals to a port's holder", "every signal sent on the host", costSignal},
	impactProgram:         {"client impact: connections refused and datagrams dropped at an incident's port", "every packet the kernel drops (kfree_skb)", costKfreeSkb},
	"follow_fork":         {"--follow-children: a traced process's new children", "every fork", costFork},
	"follow_exit":         {"--follow-children: forgetting a traced process that exited", "every process exit", costFollowExit},
}

// Hooks says which kernel hooks backend b attaches on this kernel, when,
// and what each costs the rest of the host: the programs it loads
// (programGroups), named by their sections in the BPF object. It does not
// load anything into the kernel.
func Hooks(b Backend) (events.DoctorHooks, error) {
	hooks, err := hookList(b, impactSource())
	if err != nil {
		return events.DoctorHooks{Hooks: []events.DoctorHook{}}, err
	}
	out := events.DoctorHooks{Cost: backendCost(hooks), Hooks: []events.DoctorHook{}}
	for _, h := range hooks {
		out.Hooks = append(out.Hooks, h.DoctorHook)
	}
	return out, nil
}

// hook is a DoctorHook and the programs behind it (a kprobe pair has two).
type hook struct {
	events.DoctorHook
	progs []string
}

// hookSpec is the BPF object hookList reads the sections from: parsed once
// for all backends (doctor asks for each), and only read.
var hookSpec = sync.OnceValues(loadBindwatch)

func hookList(b Backend, impact string) ([]hook, error) {
	spec, err := hookSpec()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w (hint: run make generate)", err)
	}
	var hooks []hook
	for _, g := range programGroups(b, impact) {
		progs := map[string]bool{}
		for _, p := range g.progs {
			progs[p] = true
		}
		for _, p := range g.progs {
			ps := spec.Programs[p]
			if ps == nil {
				return nil, fmt.Errorf("program %s of the %s backend is not in the BPF object (hint: run make generate)", p, b.Name())
			}
			h := hook{DoctorHook: events.DoctorHook{Hook: ps.SectionName, Attached: g.when}, progs: []string{p}}
			if fn, ok := strings.CutPrefix(p, "kretprobe_"); ok && progs["kprobe_"+fn] {
				continue // told with its kprobe
			}
			if fn, ok := strings.CutPrefix(p, "kprobe_"); ok && progs["kretprobe_"+fn] {
				h.Hook += " + kretprobe"
				h.progs = append(h.progs, "kretprobe_"+fn)
			}
			t, ok := hookTexts[p]
			if !ok {
				t = hookText{"not described (a bindwatch bug)", "not described", "not described"}
			}
			h.For, h.Fires, h.Cost = t.what, t.fires, t.cost
			if g.when == events.HookDuringIncidents {
				h.Fires += ", while a port has an open incident and " + linger() + " after the last one closes"
			}
			hooks = append(hooks, h)
		}
	}
	return hooks, nil
}

// backendCost is a backend's price for the host: what its always
// attached hooks make the rest of the host pay.
func backendCost(hooks []hook) string {
	syscalls := false
	var kfuncs, small []string
	for _, h := range hooks {
		if h.Attached != events.HookAlways && h.Attached != events.HookUnlessNoHolders {
			continue
		}
		kind, target, _ := strings.Cut(h.Hook, "/")
		switch kind {
		case "tracepoint":
			syscalls = true
		case "fexit", "fentry", "kprobe":
			fn, _, _ := strings.Cut(target, " ")
			kfuncs = append(kfuncs, fn)
		default: // tp_btf: host-wide events that pay a check
			small = append(small, h.Fires)
		}
	}
	var cost string
	if syscalls {
		cost = costSyscallSlowPath + "; --backend fentry or kprobe, where the kernel allows them, hook only the calls they trace"
	} else {
		cost = "only the calls of the hooked kernel functions pay (" + strings.Join(kfuncs, ", ") + "); the host's other syscalls pay nothing"
	}
	if len(small) > 0 {
		cost += "; a check on " + strings.Join(small, " and on ")
	}
	return cost + "; during an incident (and " + linger() + " after), the host's TCP state changes, signals and dropped packets pay a few percent, their hooks attached only then"
}

// linger is DefaultHooksLinger in words.
func linger() string { return fmt.Sprintf("%g s", DefaultHooksLinger.Seconds()) }
