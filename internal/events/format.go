package events

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Formats a Writer can write.
const (
	FormatText = "text"
	FormatJSON = "json"
	// FormatECS is each record as an Elastic Common Schema document; the
	// form lives in internal/sink (sink.ECS).
	FormatECS = "ecs"
)

// Writer writes records as whole lines, each with a single Write call, so a
// file opened with O_APPEND never holds half a record, whatever stops the
// process. It is safe for concurrent use.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	format string
}

// NewWriter returns a Writer of format FormatText or FormatJSON.
func NewWriter(w io.Writer, format string) (*Writer, error) {
	if format != FormatText && format != FormatJSON {
		return nil, fmt.Errorf("unknown format %q (hint: text or json)", format)
	}
	return &Writer{w: w, format: format}, nil
}

// Write formats one record.
func (w *Writer) Write(rec Record) error {
	var line []byte
	if w.format == FormatJSON {
		b, err := MarshalJSON(rec)
		if err != nil {
			return err
		}
		line = append(b, '\n')
	} else {
		line = []byte(Text(rec) + "\n")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(line)
	return err
}

// Text renders a record for people: one line, plus indented "why"/"fix"
// lines for a failure that has been diagnosed. A record with a text of
// its own elsewhere (Who.WriteText, Doctor.WriteText, the report's
// incidents) is its JSON form here.
func Text(rec Record) string {
	if s, ok := text(rec); ok {
		return s
	}
	b, _ := MarshalJSON(rec)
	return string(b)
}

// text is Text's line for rec; ok is false for a record type it does not
// know, which TestTextKnowsEveryRecord catches.
func text(rec Record) (string, bool) {
	switch r := rec.(type) {
	case *Who, *Doctor, *FreeRecord, *HeldRecord, *WaitFreeRecord, *Incident, *Spread:
		b, _ := MarshalJSON(rec)
		return string(b), true
	case *Failure:
		return failureText(r), true
	case *Start:
		s := fmt.Sprintf("%s bindwatch on %s: tracing failed bind()/listen() with the %s backend (kernel %s)", clock(r.Time), r.Host, r.Backend, r.Kernel)
		if f := FiltersText(r.Filters); f != "" {
			s += "; only " + f
		}
		if !r.HoldersRecorded {
			s += "; holders not recorded in the kernel (--no-holders): looked up after each failure"
		}
		if len(r.Skipped) > 0 {
			names := make([]string, 0, len(r.Skipped))
			for name := range r.Skipped {
				names = append(names, name)
			}
			sort.Strings(names)
			s += fmt.Sprintf("; %s not usable here (bindwatch doctor says why)", strings.Join(names, ", "))
		}
		for _, name := range slices.Sorted(maps.Keys(r.Limits)) {
			s += fmt.Sprintf("; limit: %s", Escape(r.Limits[name]))
		}
		return s, true
	case *Repeats:
		return fmt.Sprintf("%s %s %s %s port %d pid %d (%s) failed the same way %d more time%s (folded in the kernel)",
			clock(r.Time), r.Errno, r.Syscall, r.Proto, r.Port, r.PID, Escape(r.Comm), r.Count, Plural(r.Count)), true
	case *Lost:
		if r.Count == 0 {
			return fmt.Sprintf("%s LOST %d incident record%s (signal, released, recovered, port_shared): the incident ring or queue was full (a signal flood?); incidents may miss them", clock(r.Time), r.IncidentRecords, Plural(r.IncidentRecords)), true
		}
		s := fmt.Sprintf("%s LOST %d failure%s: the ring buffer was full, and the fold table too (or --fold 0) (hint: raise --ring-size, or narrow with --port/--pid)", clock(r.Time), r.Count, Plural(r.Count))
		if r.IncidentRecords > 0 {
			s += fmt.Sprintf("; and %d incident record%s", r.IncidentRecords, Plural(r.IncidentRecords))
		}
		return s, true
	case *Released:
		return releasedText(r), true
	case *Signal:
		return signalText(r), true
	case *Recovered:
		return recoveredText(r), true
	case *PortFree:
		return portFreeText(r), true
	case *PortShared:
		return portSharedText(r), true
	case *Abandoned:
		return abandonedText(r), true
	case *IncidentUntracked:
		return untrackedText(r), true
	case *SignalRepeats:
		return signalRepeatsText(r), true
	case *Stop:
		s := fmt.Sprintf("%s bindwatch stopped after %s: %d failure%s, %d reported, %d folded, %d lost",
			clock(r.Time), (time.Duration(r.DurationMS) * time.Millisecond).String(), r.Failures, Plural(r.Failures), r.Reported, r.Folded, r.Lost)
		if r.Unread > 0 {
			s += fmt.Sprintf(", %d unread (still queued when it stopped)", r.Unread)
		}
		if r.OtherUnits > 0 {
			s += fmt.Sprintf(", %d of other units (left out by --unit)", r.OtherUnits)
		}
		if r.Unfolded > 0 {
			s += fmt.Sprintf("; %d not folded: the fold table was full", r.Unfolded)
		}
		if r.Unresolved > 0 {
			s += fmt.Sprintf("; %d could not be resolved (kernel's view only)", r.Unresolved)
		}
		if r.IncidentsUntracked > 0 {
			s += fmt.Sprintf("; %d incident%s not tracked: the incident tables were full, or their users at their quota (incident_untracked records)", r.IncidentsUntracked, Plural(r.IncidentsUntracked))
		}
		if r.Unfollowed > 0 {
			s += fmt.Sprintf("; %d new process(es) of the traced tree not followed (their failures were not traced): the table of followed processes was full", r.Unfollowed)
		}
		if r.OutputLost > 0 {
			s += fmt.Sprintf("; %d record%s (%d failure%s) could not be written here", r.OutputLost, Plural(r.OutputLost), r.OutputLostFailures, Plural(r.OutputLostFailures))
		}
		return s, true
	case *OutputLost:
		return fmt.Sprintf("%s OUTPUT LOST %d record%s (%d failure%s) could not be written to %s: %s", clock(r.Time), r.Records, Plural(r.Records), r.Failures, Plural(r.Failures), r.Output, r.Error), true
	}
	return "", false
}

func failureText(f *Failure) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s %s pid %d (%s) uid %d", clock(f.Time), f.Errno, f.Syscall, f.Proto,
		HostPort(f.Addr, f.Port), f.Process.PID, commandLine(&f.Process), f.Process.UID)
	if d := f.Destination; d != nil {
		b.WriteString(" to " + HostPort(d.IP, d.Port))
	}
	fmt.Fprintf(&b, " reuseaddr=%s", OnOff(f.Socket.ReuseAddr))
	if f.Socket.ReusePort {
		b.WriteString(" reuseport=on")
	}
	if f.Socket.V6Only != nil {
		fmt.Fprintf(&b, " v6only=%s", OnOff(*f.Socket.V6Only))
	}
	if f.Socket.BoundDev != "" {
		fmt.Fprintf(&b, " dev=%s", Escape(f.Socket.BoundDev))
	}
	if c := PlaceText(&f.Process); c != "" {
		b.WriteString(" in " + c)
	}
	for i, h := range f.Holders {
		if i == 3 {
			fmt.Fprintf(&b, " (+%d more)", len(f.Holders)-i)
			break
		}
		sep := ", "
		if i == 0 {
			sep = " <- held by "
		}
		b.WriteString(sep + HolderLine(&h, true))
	}
	if f.Diagnosis != "" {
		b.WriteString("\n  why: " + f.Diagnosis)
	}
	if f.Hint != "" {
		b.WriteString("\n  fix: " + f.Hint)
	}
	if f.ResolveError != "" {
		b.WriteString("\n  unresolved: " + Escape(f.ResolveError))
	}
	return b.String()
}

// HolderLine is bindwatch's one line for a holder. Full, for a line that
// has not named the port, it gives the address, where the first process
// runs, and what is known of the socket's end: "pid 42 (nginx: master)
// LISTEN 0.0.0.0:8080 +1 process in container web". Brief, for a line that
// has (an incident's failure line, a run's summary): "pid 42 (nginx:
// master) LISTEN +1 process", "TIME_WAIT (no process)". A holder recorded
// by the kernel at the failure and gone since says "[exited since]" in
// either.
func HolderLine(h *Holder, full bool) string {
	s := h.State
	if full {
		s += " " + HostPort(h.Addr, h.Port)
	}
	if len(h.Processes) == 0 {
		switch {
		case full && h.State == "TIME_WAIT":
			return s + fmt.Sprintf(" (no process, %dms left)", h.RemainingMS)
		case full && h.Unowned == UnownedNoFDTable:
			return s + " (held by no process's fd table: in flight in a unix socket's queue?)"
		}
		return s + " (no process)"
	}
	p := h.Processes[0]
	s = ProcessShort(&p) + " " + s
	if len(h.Processes) > 1 {
		if more := len(h.Processes) - 1; more == 1 {
			s += " +1 process"
		} else {
			s += fmt.Sprintf(" +%d processes", more)
		}
	}
	if full {
		if c := PlaceText(&p); c != "" {
			s += " in " + c
		}
	}
	if h.Source == Recorded {
		s += " [exited since]"
	}
	if full && h.Unowned == UnownedNoFDTable {
		s += " [in no process's fd table now: in flight in a unix socket's queue?]"
	}
	return s
}

// HostPort renders addr:port, bracketing IPv6 addresses (and anything
// else with a colon in it): bindwatch's one addr:port formatter.
func HostPort(addr string, port uint16) string {
	if a, err := netip.ParseAddr(addr); err == nil {
		return netip.AddrPortFrom(a, port).String()
	}
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

// ProcessShort is a process as a failure line names it: "pid 42 (python3
// -m http.server)", its command line escaped and cut (ProcessText is the
// long form, with user, age and cgroup).
func ProcessShort(p *Process) string {
	if cmd := commandLine(p); cmd != "" {
		return fmt.Sprintf("pid %d (%s)", p.PID, cmd)
	}
	return fmt.Sprintf("pid %d", p.PID)
}

// commandLine is the process's argv (or its comm), on one line, escaped
// (Escape) and cut at 80 bytes.
func commandLine(p *Process) string {
	s := p.Comm
	if len(p.Cmdline) > 0 {
		s = strings.Join(p.Cmdline, " ")
	}
	return EscapeCut(s, 80)
}

// PlaceText is where a process runs, for text lines: its container
// (ContainerText), else its systemd unit (UnitText), else "".
func PlaceText(p *Process) string {
	if c := ContainerText(p); c != "" {
		return c
	}
	return UnitText(p)
}

// UnitText names the systemd unit a process runs in: "unit nginx.service",
// "unit foo.service of user@1000.service" for a user's unit, "" outside
// any. A user may name the cgroups of its own units: escaped.
func UnitText(p *Process) string {
	switch {
	case p.Unit == "":
		return ""
	case p.UnitManager != "":
		return "unit " + Escape(p.Unit) + " of " + Escape(p.UnitManager)
	}
	return "unit " + Escape(p.Unit)
}

// ContainerText names the container a process runs in, for text lines:
// "container web (pod shop/web-7d9f-abc)", "container 3f2a1b9c0d4e" when
// only its id is known, "" for a process in no container. Names are
// whatever the container's creator chose, so they are escaped.
func ContainerText(p *Process) string {
	c := p.Container
	name := c.Name
	if name == "" {
		name = c.ID
		if name == "" {
			name = p.ContainerID
		}
		name = name[:min(12, len(name))]
	}
	pod := ""
	if p.Pod.Name != "" {
		pod = p.Pod.Name
		if p.Pod.Namespace != "" {
			pod = p.Pod.Namespace + "/" + pod
		}
	}
	switch {
	case name != "" && pod != "":
		return "container " + Escape(name) + " (pod " + Escape(pod) + ")"
	case name != "":
		return "container " + Escape(name)
	case pod != "":
		return "pod " + Escape(pod)
	}
	return ""
}

func clock(t time.Time) string { return t.Local().Format("15:04:05.000") }

// Seconds renders milliseconds — a TIME_WAIT socket's remaining time, say —
// as seconds: "0.8s" under ten seconds, "43s" from there.
func Seconds(ms int64) string {
	if ms < 10_000 {
		return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + "s"
	}
	return strconv.FormatInt((ms+500)/1000, 10) + "s"
}

// OnOff renders a socket option as text lines show it.
func OnOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Plural is "s" unless n is 1: fmt.Sprintf("%d port%s", n, Plural(n)).
func Plural[N ~int | ~uint64](n N) string {
	if n == 1 {
		return ""
	}
	return "s"
}
