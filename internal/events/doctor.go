package events

import (
	"fmt"
	"io"
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
