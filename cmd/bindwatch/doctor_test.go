package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// runDoctor runs `bindwatch doctor --format json` (after prefix, a command
// that runs it: in a namespace), checks its record against
// docs/schema.json and returns it.
func runDoctor(t *testing.T, prefix ...string) events.Doctor {
	t.Helper()
	argv := append(prefix, bindwatchBin, "doctor", "--format", "json")
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("doctor JSON: %v\n%s", err, out)
	}
	if err := recordSchema().Validate(doc); err != nil {
		t.Errorf("doctor's record does not match docs/schema.json: %v\n%s", err, out)
	}
	var r events.Doctor
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("doctor JSON: %v\n%s", err, out)
	}
	return r
}

// doctor loads every backend for real; on any kernel CI runs on, at least
// the backend under test must be reported working, and auto must pick one.
func TestDoctor(t *testing.T) {
	testenv.RequireRoot(t)
	r := runDoctor(t)
	if r.Type != events.TypeDoctor || r.Version != events.Version || r.Bindwatch == "" {
		t.Errorf("type %q, version %d, bindwatch %q: want doctor, %d and the binary's version", r.Type, r.Version, r.Bindwatch, events.Version)
	}
	if len(r.Backends) != 3 || r.Auto == "" || r.Backends[r.Auto] != "ok" {
		t.Errorf("backends %v, auto %q: want all three probed and auto one that works", r.Backends, r.Auto)
	}
	if b := testenv.Backend(); b != "auto" && r.Backends[b] != "ok" {
		t.Errorf("backend under test %s: %s", b, r.Backends[b])
	}
	if r.Kernel == "" || r.BTF == "" || r.Tracefs == "" || r.Lockdown == "" || r.Privileges != "root" {
		t.Errorf("report incomplete: %+v", r)
	}
	// Client impact: measured from 5.17 on (kfree_skb's drop reason), and
	// the hook named; before, said not measured.
	measured := strings.HasPrefix(r.ClientImpact, "measured by tp_btf/kfree_skb")
	if want := testenv.KernelAtLeast(t, 5, 17); measured != want || !measured && !strings.HasPrefix(r.ClientImpact, "not measured on this kernel") {
		t.Errorf("client_impact %q on kernel %s: want measured %v", r.ClientImpact, r.Kernel, want)
	}
}

// doctor checks the ephemeral range of its network namespace: in a private
// one whose range (30000–30010) overlaps the NodePort range and holds a
// fixed listener, it names the listener and the overlap, and leaves out a
// reserved port; the defaults of a fresh namespace draw no advice.
func TestDoctorEphemeralRange(t *testing.T) {
	testenv.RequireRoot(t)
	doctor := func(name string) events.Doctor {
		t.Helper()
		r := runDoctor(t, testenv.InNetns(name)...)
		if r.Ephemeral == nil || r.Ephemeral.Error != "" {
			t.Fatalf("ephemeral_range %+v: want it checked", r.Ephemeral)
		}
		return r
	}

	fresh, _ := testenv.NewNetns(t)
	if e := doctor(fresh).Ephemeral; len(e.Advice) != 0 || len(e.Listeners) != 0 || e.NodePortOverlap != "" || e.Lo != 32768 || e.Hi != 60999 {
		t.Errorf("fresh namespace: %+v: want the kernel's default range 32768–60999 and no advice", e)
	}

	name, _ := testenv.NewNetns(t)
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_port_range", "30000 30010")
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_reserved_ports", "30007")
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	testenv.InPrivateNetns(t, ns, func() {
		for _, addr := range []string{"127.0.0.1:30005", "[::]:30007", "127.0.0.1:40000"} {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}
	})
	e := doctor(name).Ephemeral
	if e.Lo != 30000 || e.Hi != 30010 || e.Reserved != "30007" {
		t.Errorf("range %d–%d reserved %q: want 30000–30010, 30007", e.Lo, e.Hi, e.Reserved)
	}
	if len(e.Listeners) != 1 || e.Listeners[0] != 30005 {
		t.Errorf("listeners_in_range %v: want [30005] (30007 is reserved, 40000 outside)", e.Listeners)
	}
	if e.NodePortOverlap != "30000–30010" {
		t.Errorf("nodeport_overlap %q: want 30000–30010", e.NodePortOverlap)
	}
	if len(e.Advice) != 2 || !strings.Contains(e.Advice[0], "net.ipv4.ip_local_reserved_ports=30007,30005") ||
		!strings.Contains(e.Advice[1], `net.ipv4.ip_local_port_range="32768 60999"`) || strings.Contains(e.Advice[1], "reserved_ports=") {
		t.Errorf("advice %q: want the listener reserved (keeping 30007), and the range moved above the NodePorts — not the NodePorts reserved, which would leave connect() no port", e.Advice)
	}
}

// doctor says, for every backend, which kernel hooks it attaches and what
// they cost the host, and the text form shows the auto backend's hooks in
// full: an SRE reads there, before deploying to every node, that the
// tracepoint backend puts every syscall on the kernel's slow path.
func TestDoctorHooks(t *testing.T) {
	testenv.RequireRoot(t)
	r := runDoctor(t)
	// The hook each backend needs for bind(), as the kernel names it, and
	// what its cost must say.
	want := map[string]struct{ bind, cost string }{
		"tracepoint": {"tracepoint/syscalls/sys_exit_bind", "every syscall of every task on the host takes the kernel's slow path"},
		"fentry":     {"fexit/inet_bind", "the host's other syscalls pay nothing"},
		"kprobe":     {"kprobe/inet_bind + kretprobe", "the host's other syscalls pay nothing"},
	}
	if len(r.Hooks) != len(want) {
		t.Errorf("hooks of %d backends, want %d: %v", len(r.Hooks), len(want), r.Hooks)
	}
	for name, w := range want {
		h := r.Hooks[name]
		if h == nil || h.Error != "" {
			t.Errorf("%s: hooks %+v", name, h)
			continue
		}
		if !strings.Contains(h.Cost, w.cost) {
			t.Errorf("%s: cost %q, want it to say %q", name, h.Cost, w.cost)
		}
		seen := map[string]string{}
		for _, k := range h.Hooks {
			if k.For == "" || k.Fires == "" || k.Cost == "" {
				t.Errorf("%s: hook %+v not described", name, k)
			}
			seen[k.Hook] = k.Attached
		}
		// Every backend: its bind() hook always, the incident hooks only
		// during incidents.
		if seen[w.bind] != events.HookAlways || seen["tp_btf/signal_generate"] != events.HookDuringIncidents || seen["tp_btf/inet_sock_set_state"] != events.HookDuringIncidents {
			t.Errorf("%s: hooks %v: want %s always, signal_generate and inet_sock_set_state during incidents", name, seen, w.bind)
		}
		measured := strings.HasPrefix(r.ClientImpact, "measured")
		if _, ok := seen["tp_btf/kfree_skb"]; ok != measured {
			t.Errorf("%s: tp_btf/kfree_skb among the hooks: %v, but client_impact %q", name, ok, r.ClientImpact)
		}
	}

	text, err := exec.Command(bindwatchBin, "doctor", "--format", "text").Output()
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, text)
	}
	auto := r.Hooks[r.Auto]
	if auto == nil || len(auto.Hooks) == 0 {
		t.Fatalf("no hooks for auto's backend %q: %v", r.Auto, r.Hooks)
	}
	_, after, ok := strings.Cut(string(text), "--backend auto uses: "+r.Auto+"\n  cost: "+auto.Cost+"\n  hooks:\n    "+auto.Hooks[0].Hook+" (always)\n")
	if !ok {
		t.Fatalf("doctor's text does not show auto's (%s) cost and hooks after its choice:\n%s", r.Auto, text)
	}
	for _, k := range auto.Hooks[1:] {
		if !strings.Contains(after, "    "+k.Hook+" (") || !strings.Contains(after, "      cost:  "+k.Cost+"\n") {
			t.Errorf("doctor's text lacks auto's hook %s or its cost:\n%s", k.Hook, text)
		}
	}
	for name := range want {
		if name != r.Auto && !strings.Contains(after, "\n"+name+" (") {
			t.Errorf("doctor's text does not say what %s would hook:\n%s", name, text)
		}
	}
}
