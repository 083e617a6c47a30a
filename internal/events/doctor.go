package events

import (
	"fmt"
	"io"
	"strings"
)

// TypeDoctor is the type of `bindwatch doctor`'s record.
const TypeDoctor = "doctor"

// Doctor is what `bindwatch doctor` found on this host, field by field.
type Doctor struct {
	Type    string `json:"type"`    // "doctor"
	Version int    `json:"version"` // the schema version, as in every record
	// Bindwatch is the version of the bindwatch binary that checked.
	Bindwatch  string            `json:"bindwatch"`
	Kernel     string            `json:"kernel"`
	Arch       string            `json:"arch"`
	BTF        string            `json:"btf"`
	Lockdown   string            `json:"lockdown"`
	Tracefs    string            `json:"tracefs"`
	Privileges string            `json:"privileges"`
	Backends   map[string]string `json:"backends"` // name -> "ok" or why not
	Auto       string            `json:"auto"`     // what --backend auto picks, "" if none
	Owners     string            `json:"owner_lookup"`
	// ClientImpact says whether this kernel counts what clients met
	// during an incident (refused connections, dropped datagrams), and by
	// which hook.
	ClientImpact string `json:"client_impact"`
	// Ephemeral checks this network namespace's ephemeral port range
	// against its fixed listeners and the Kubernetes NodePort range.
	Ephemeral *DoctorEphemeral `json:"ephemeral_range,omitempty"`
	// Hooks says, for each backend (working here or not), which kernel
	// hooks it attaches on this kernel and what they cost the host.
	Hooks map[string]*DoctorHooks `json:"hooks"`
	// Order is the order --backend auto tries the backends in.
	Order []string `json:"-"`
}

// WriteText prints the report as people read it: a row per check, a row
// per backend in the order auto tries them, and what auto uses.
func (r *Doctor) WriteText(w io.Writer) {
	row := func(k, v string) { fmt.Fprintf(w, "%-13s %s\n", k, v) }
	row("bindwatch", r.Bindwatch)
	row("kernel", r.Kernel+" "+r.Arch)
	row("BTF", r.BTF)
	row("lockdown", r.Lockdown)
	row("tracefs", r.Tracefs)
	row("privileges", r.Privileges)
	row("owner lookup", r.Owners)
	row("client impact", r.ClientImpact)
	if e := r.Ephemeral; e != nil {
		switch {
		case e.Error != "":
			row("ephemeral", "unknown: "+e.Error)
		case len(e.Advice) == 0:
			row("ephemeral", fmt.Sprintf("%d–%d: no listener in the range, no overlap with the NodePort range 30000–32767", e.Lo, e.Hi))
		default:
			row("ephemeral", fmt.Sprintf("%d–%d (reserved: %q)", e.Lo, e.Hi, e.Reserved))
			for _, a := range e.Advice {
				fmt.Fprintf(w, "  %s\n", a)
			}
		}
	}
	fmt.Fprintln(w, "backends (in the order --backend auto tries them):")
	for _, name := range r.Order {
		fmt.Fprintf(w, "  %-11s %s\n", name, r.Backends[name])
	}
	if r.Auto == "" {
		fmt.Fprintln(w, "no backend works here: bindwatch cannot trace on this host (see the reasons above)")
		return
	}
	fmt.Fprintf(w, "--backend auto uses: %s\n", r.Auto)
	if h := r.Hooks[r.Auto]; h != nil {
		h.writeText(w, "  ")
	}
	for _, name := range r.Order {
		h := r.Hooks[name]
		if name == r.Auto || h == nil {
			continue
		}
		if r.Backends[name] == "ok" {
			fmt.Fprintf(w, "%s (works here too: --backend %s) hooks:", name, name)
		} else {
			fmt.Fprintf(w, "%s (does not work here) would hook:", name)
		}
		if h.Error != "" {
			fmt.Fprintf(w, " unknown: %s\n", h.Error)
			continue
		}
		var always []string
		for _, k := range h.Hooks {
			if k.Attached == HookAlways {
				always = append(always, k.Hook)
			}
		}
		fmt.Fprintf(w, " %s\n  cost: %s\n", strings.Join(always, ", "), h.Cost)
	}
}

// writeText prints a backend's cost, then each hook with when it is
// attached, when it fires, what for and its cost.
func (h *DoctorHooks) writeText(w io.Writer, indent string) {
	if h.Error != "" {
		fmt.Fprintf(w, "%shooks: unknown: %s\n", indent, h.Error)
		return
	}
	fmt.Fprintf(w, "%scost: %s\n%shooks:\n", indent, h.Cost, indent)
	for _, k := range h.Hooks {
		fmt.Fprintf(w, "%s  %s (%s)\n", indent, k.Hook, hookWhen[k.Attached])
		fmt.Fprintf(w, "%s    for:   %s\n", indent, k.For)
		fmt.Fprintf(w, "%s    fires: %s\n", indent, k.Fires)
		fmt.Fprintf(w, "%s    cost:  %s\n", indent, k.Cost)
	}
}

// DoctorHooks is what one backend hooks in the kernel, and its price for
// the rest of the host.
type DoctorHooks struct {
	// Cost is the backend's price for the host in a sentence: what every
	// node pays while bindwatch runs with it.
	Cost string `json:"cost"`
	// Hooks are its hooks, those that are always attached first; empty
	// with Error.
	Hooks []DoctorHook `json:"hooks"`
	// Error says why the hooks could not be listed.
	Error string `json:"error,omitempty"`
}

// DoctorHook is one kernel hook a backend attaches.
type DoctorHook struct {
	// Hook is its name as the kernel knows it (the program's section):
	// "tracepoint/syscalls/sys_exit_bind", "fexit/inet_bind",
	// "kprobe/inet_bind + kretprobe" for a kprobe pair.
	Hook string `json:"hook"`
	// For is what bindwatch learns there.
	For string `json:"for"`
	// Attached is when: HookAlways, HookDuringIncidents,
	// HookUnlessNoHolders or HookFollowChildren.
	Attached string `json:"attached"`
	// Fires says on what the program runs.
	Fires string `json:"fires"`
	// Cost is what the hook costs the host, from the project's
	// measurements where there are some.
	Cost string `json:"cost"`
}

// When a hook is attached (DoctorHook.Attached).
const (
	HookAlways          = "always"            // while bindwatch traces
	HookDuringIncidents = "during_incidents"  // while a port has an open incident, and 30 s after the last closes
	HookUnlessNoHolders = "unless_no_holders" // while bindwatch traces, unless --no-holders
	HookFollowChildren  = "follow_children"   // with --pid --follow-children (and bindwatch run)
)

// hookWhen says Attached in words.
var hookWhen = map[string]string{
	HookAlways:          "always",
	HookDuringIncidents: "during incidents",
	HookUnlessNoHolders: "unless --no-holders",
	HookFollowChildren:  "with --follow-children",
}

// DoctorEphemeral is doctor's check of the ephemeral port range
// (net.ipv4.ip_local_port_range, less ip_local_reserved_ports) of the
// network namespace doctor runs in.
type DoctorEphemeral struct {
	Lo       int    `json:"lo"`
	Hi       int    `json:"hi"`
	Reserved string `json:"reserved"`
	// Listeners are the TCP ports listened on inside the range and not
	// reserved (at most DoctorListenersMax, lowest first): a connect()
	// may take such a port while its server is down, and the server then
	// fails to start with EADDRINUSE.
	Listeners []int `json:"listeners_in_range"`
	// ListenersMore counts the listeners in the range left out of
	// Listeners.
	ListenersMore int `json:"listeners_more,omitempty"`
	// NodePortOverlap is the part of the Kubernetes NodePort range
	// (30000–32767) inside the ephemeral range and not reserved, as
	// "lo–hi"; "" when none.
	NodePortOverlap string `json:"nodeport_overlap"`
	// Advice says what to do, a line per finding; empty when all is well.
	Advice []string `json:"advice"`
	// Error says why the range could not be read; the other fields are
	// then empty.
	Error string `json:"error,omitempty"`
}

// DoctorListenersMax bounds DoctorEphemeral.Listeners.
const DoctorListenersMax = 32
