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
