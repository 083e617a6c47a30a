package events

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// TypeWho is the type of `bindwatch who`'s records.
const TypeWho = "who"

// Who is one line of `bindwatch who --format json`: who holds one
// port of one protocol, in bindwatch's network namespace or, with
// --all-netns, in all of them (each holder carries its netns).
type Who struct {
	// Header's Time is when the port was looked at.
	Header
	Port     uint16    `json:"port"`
	Proto    string    `json:"proto"`
	Held     bool      `json:"held"`
	Holders  []Holder  `json:"holders"`
	TimeWait *TimeWait `json:"time_wait,omitempty"`
	// Sockets counts every socket on the port; Holders lists all
	// listening and bound ones but only the first few connections and
	// TIME_WAIT sockets.
	Sockets int `json:"sockets"`
	// Netns lists the network namespaces searched (inodes).
	Netns []uint32 `json:"netns"`
	// OwnerLookup: how owners were found, "bpf_iter" or "proc_scan";
	// absent for a free port.
	OwnerLookup string `json:"owner_lookup,omitempty"`
	// PartialView says bindwatch ran without root: other users' processes
	// are invisible to it, so a socket listed without processes may still
	// be open in one of theirs.
	PartialView bool `json:"partial_view,omitempty"`
	// EphemeralNote warns that outgoing connections may take the port:
	// it lies in bindwatch's namespace's ip_local_port_range and is not
	// reserved. Present whether the port is held or not.
	EphemeralNote string `json:"ephemeral_note,omitempty"`
	// ReusePortGroups are the SO_REUSEPORT groups on the port: two or more
	// listening (TCP) or bound (UDP) sockets with reuseport on one address,
	// among which the kernel splits new connections.
	ReusePortGroups []ReusePortGroup `json:"reuseport_groups,omitempty"`
}

// ReusePortGroup is one SO_REUSEPORT group of a who record.
type ReusePortGroup struct {
	Netns   uint32 `json:"netns,omitempty"`
	Addr    string `json:"addr"`
	Sockets int    `json:"sockets"`
	// PIDs own the group's sockets (the first of each socket's owners);
	// Programs is how many different programs they run (program and
	// cgroup, the diagnosis's identity rule): more than one is silent
	// sharing (port_shared).
	PIDs     []int `json:"pids"`
	Programs int   `json:"programs"`
}

// WriteText prints one port as people read it: the port and whether it
// is held, then a line per socket and a line per owning process (with the
// network namespace of each socket when showNetns).
func (rec *Who) WriteText(w io.Writer, showNetns bool, now time.Time) {
	defer func() {
		if rec.EphemeralNote != "" {
			fmt.Fprintf(w, "  note: %s\n", rec.EphemeralNote)
		}
	}()
	if !rec.Held {
		fmt.Fprintf(w, "%d/%s: free\n", rec.Port, rec.Proto)
		return
	}
	fmt.Fprintf(w, "%d/%s: held (%d socket%s)\n", rec.Port, rec.Proto, rec.Sockets, Plural(rec.Sockets))
	listedTW := 0
	for _, h := range rec.Holders {
		if h.State == "TIME_WAIT" {
			listedTW++
			continue
		}
		line := fmt.Sprintf("  %-11s %s", h.State, HostPort(h.Addr, h.Port))
		if h.PeerPort != 0 {
			line += " -> " + HostPort(h.PeerAddr, h.PeerPort)
		}
		if h.Inode != 0 {
			line += fmt.Sprintf("  inode %d", h.Inode)
		}
		line += fmt.Sprintf("  uid %d", h.UID)
		if h.ReuseAddr != nil {
			line += "  reuseaddr=" + OnOff(*h.ReuseAddr)
		}
		if h.ReusePort != nil {
			line += "  reuseport=" + OnOff(*h.ReusePort)
		}
		if h.V6Only != nil {
			line += "  v6only=" + OnOff(*h.V6Only)
		}
		if showNetns {
			line += fmt.Sprintf("  netns %d", h.Netns)
		}
		fmt.Fprintln(w, line)
		if len(h.Processes) == 0 {
			if rec.PartialView && h.Unowned == "" {
				h.Unowned = UnownedHidden
			}
			fmt.Fprintln(w, "              "+UnownedText(&h))
		}
		for _, p := range h.Processes {
			fmt.Fprintln(w, "              "+ProcessText(&p, now))
		}
	}
	if rec.TimeWait != nil {
		fmt.Fprintf(w, "  TIME_WAIT   %d socket%s, the last expires in %.1fs (no process: the kernel keeps them 60 s after a close)\n",
			rec.TimeWait.Count, Plural(rec.TimeWait.Count), float64(rec.TimeWait.MaxRemainingMS)/1000)
	}
	for _, g := range rec.ReusePortGroups {
		line := fmt.Sprintf("  SO_REUSEPORT group on %s: %d sockets", HostPort(g.Addr, rec.Port), g.Sockets)
		if g.Programs > 1 {
			line += fmt.Sprintf(" of %d different programs (shared: see port_shared)", g.Programs)
		}
		fmt.Fprintf(w, "%s, pids %s; the kernel splits new connections among them, about 1/%d each\n", line, joinInts(g.PIDs), g.Sockets)
	}
	if hidden := rec.Sockets - len(rec.Holders) - (rec.timeWaitCount() - listedTW); hidden > 0 {
		fmt.Fprintf(w, "  … and %d more connection%s (--format json lists the first few)\n", hidden, Plural(hidden))
	}
}

func (rec *Who) timeWaitCount() int {
	if rec.TimeWait == nil {
		return 0
	}
	return rec.TimeWait.Count
}

// ProcessText is the one line that names a process for people, with what
// tells it apart: "pid 42 nginx (user root, ppid 1, up 3h12m, container
// web): nginx -g daemon off;". Everything the process controls is escaped
// (Escape); its command line is cut at 100 bytes. ProcessShort is the short
// form of failure lines.
func ProcessText(p *Process, now time.Time) string {
	var details []string
	if p.User != "" {
		details = append(details, "user "+Escape(p.User))
	} else {
		details = append(details, fmt.Sprintf("uid %d", p.UID))
	}
	if p.PPID != 0 {
		details = append(details, fmt.Sprintf("ppid %d", p.PPID))
	}
	if !p.StartTime.IsZero() {
		details = append(details, "up "+age(now.Sub(p.StartTime)))
	}
	if c := PlaceText(p); c != "" {
		details = append(details, c)
	} else if p.Cgroup != "" && p.Cgroup != "/" {
		details = append(details, "cgroup "+Escape(p.Cgroup))
	}
	comm := Escape(p.Comm)
	if comm == "" {
		comm = "?"
	}
	s := fmt.Sprintf("pid %d %s (%s)", p.PID, comm, strings.Join(details, ", "))
	if cmd := strings.Join(p.Cmdline, " "); cmd != "" {
		s += ": " + EscapeCut(cmd, 100)
	}
	return s
}

// age is how long a process has run: to 100 ms under a minute (restarts
// race in milliseconds), to the second beyond.
func age(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func joinInts(n []int) string {
	s := make([]string, len(n))
	for i, v := range n {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ", ")
}
