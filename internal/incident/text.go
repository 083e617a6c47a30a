package incident

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The timeline's lines: what happened, without the time (the timeline
// gives it relative to the first failure).

func failureLine(f *events.Failure) string {
	s := fmt.Sprintf("%s %s by %s", f.Errno, f.Syscall, events.ProcessShort(&f.Process))
	if len(f.Holders) > 0 {
		h := &f.Holders[0]
		s += " <- held by " + events.HolderLine(h, false)
	} else if f.TimeWait != nil {
		s += fmt.Sprintf(" <- %d TIME_WAIT socket%s", f.TimeWait.Count, events.Plural(f.TimeWait.Count))
	}
	return s
}

// repeatsLine says a repeats record, with the span its failures happened
// in (relative to the incident's start) where the record says it: no
// earlier than the process's first failure in the incident (from), since
// a fold follows a reported failure.
func repeatsLine(r *events.Repeats, start, from time.Time) string {
	s := fmt.Sprintf("%d more %s %s by %s, folded", r.Count, r.Errno, r.Syscall, events.ProcessShort(&events.Process{PID: r.PID, Comm: r.Comm}))
	if first, last, ok := RepeatsSpan(r.First, r.Last, from, r.Time); ok {
		s += fmt.Sprintf(", between %s and %s", Offset(first.Sub(start).Milliseconds()), Offset(last.Sub(start).Milliseconds()))
	}
	return s
}

// RepeatsSpan is the span a repeats mark covers: its record's first and
// last, within [from, at] (the process's first failure, and the record's
// time, which a recovery's folds are stamped with). ok is false for a
// record without a span (logs of versions before it).
func RepeatsSpan(first, last, from, at time.Time) (time.Time, time.Time, bool) {
	if first.IsZero() || last.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	if first.Before(from) {
		first = from
	}
	if last.After(at) {
		last = at
	}
	if last.Before(first) {
		last = first
	}
	return first, last, true
}

func signalLine(s *events.Signal) string {
	return fmt.Sprintf("%s to %s from %s uid %d: %s", s.Signal, events.ProcessShort(&s.Target),
		events.ProcessShort(&s.Sender), s.Sender.UID, s.Result)
}

func releasedLine(r *events.Released) string {
	s := "the " + r.State + " socket"
	if r.Holder != nil {
		s = events.ProcessShort(r.Holder)
	}
	s += " let go of the port: " + events.ReleaseHow(r)
	if r.HeldMS > 0 {
		s += ", held " + events.Millis(r.HeldMS)
	}
	if c := r.ResetConnections; c != nil && c.Count > 0 {
		s += fmt.Sprintf("; %d connection%s in its queue reset", c.Count, events.Plural(c.Count))
	}
	if r.ResetUnknown != "" {
		s += "; resets not known: " + r.ResetUnknown
	}
	if r.Source == events.SourcePoll {
		s += fmt.Sprintf(" (seen by poll, within %dms)", r.PrecisionMS)
	}
	return s
}

// untrackedLoss says what an untracked incident's story lacks.
func untrackedLoss(table string) string {
	if table == events.UntrackedKernel {
		return "its signals, release and recovery were not recorded"
	}
	return "only its failures were recorded"
}

func portFreeLine(r *events.PortFree) string {
	return fmt.Sprintf("port free: %s by %s, which let go of it at once (a check such as bindwatch wait-free; not the recovery)",
		r.Syscall, events.ProcessShort(&r.Process))
}

func recoveredLine(in *events.Incident, r *events.Recovered) string {
	who := "a new process"
	if r.SameProcess {
		who = "the same process, retrying"
	}
	s := fmt.Sprintf("%s by %s (%s) after %d attempt%s; %s", r.Syscall,
		events.ProcessShort(&r.Process), who, r.Attempts, events.Plural(r.Attempts), events.DurationsText(in.Durations))
	if t := events.ImpactText(r.ClientImpact, in.UnservedMS); t != "" {
		s += "; " + t
	}
	return s
}

// Skipped counts what a report could not use.
type Skipped struct {
	Malformed int `json:"malformed"` // not a JSON record
	Newer     int `json:"newer"`     // a schema version this bindwatch does not know
	Truncated int `json:"truncated"` // a file cut off mid-record
	// Unreadable lists files that could not be opened or read at all.
	Unreadable []string `json:"unreadable,omitempty"`
	// Refused lists rotated siblings not read, and why (ReadFiles).
	Refused []string `json:"refused,omitempty"`
}

// Any tells whether anything was skipped.
func (s Skipped) Any() bool {
	return s.Malformed+s.Newer+s.Truncated+len(s.Unreadable)+len(s.Refused) > 0
}

func (s Skipped) String() string {
	var parts []string
	if s.Malformed > 0 {
		parts = append(parts, fmt.Sprintf("%d malformed line%s", s.Malformed, events.Plural(s.Malformed)))
	}
	if s.Newer > 0 {
		parts = append(parts, fmt.Sprintf("%d record%s of a newer schema version (hint: read them with a newer bindwatch)", s.Newer, events.Plural(s.Newer)))
	}
	if s.Truncated > 0 {
		parts = append(parts, fmt.Sprintf("%d truncated file%s (cut off mid-record)", s.Truncated, events.Plural(s.Truncated)))
	}
	for _, u := range s.Unreadable {
		parts = append(parts, "unreadable: "+u)
	}
	for _, r := range s.Refused {
		parts = append(parts, "not trusted: "+r)
	}
	return strings.Join(parts, "; ")
}

// Title is an incident's one-line summary.
func Title(in *events.Incident) string {
	where := fmt.Sprintf("%s %s", in.Proto, events.HostPort(in.Addr, in.Port))
	if in.Netns != 0 {
		where += fmt.Sprintf(" (netns %d)", in.Netns)
	}
	outcome := "recovered: " + events.DurationsText(in.Durations)
	if in.UnservedMS == nil {
		outcome += " (its release was not seen: the outage is not known)"
	}
	switch in.State {
	case events.IncidentOpen:
		outcome = fmt.Sprintf("not recovered when the trace ended, %s after the first failure", events.Millis(in.ContentionMS))
	case events.IncidentNotTracked:
		outcome = fmt.Sprintf("not tracked: %s (%s); %s after the first failure", events.UntrackedWhy(in.Untracked, in.UntrackedReason),
			untrackedLoss(in.Untracked), events.Millis(in.ContentionMS))
	case events.IncidentAbandoned:
		why := "nobody tried any more"
		if in.AbandonedReason == events.AbandonedExited {
			why = "every failing process exited"
		}
		outcome = fmt.Sprintf("abandoned, not recovered: %s (the last attempt %s after the first)", why, events.Millis(in.ContentionMS))
	}
	return fmt.Sprintf("incident on %s, host %s: %d failed attempt%s, %s", where, events.Escape(in.Host), in.Attempts, events.Plural(in.Attempts), outcome)
}

// SummaryRow is an incident in a line, as the summary of a report of
// several incidents says it (text and HTML alike).
type SummaryRow struct {
	Host, Port, State, Cause string
	// Netns is the port's network namespace, "" for none known.
	Netns    string
	Attempts uint64
	// Contention and Unserved (the outage: nothing listened) are
	// durations, or "-" where not known.
	Contention, Unserved string
	Start                string
}

// Summarize is in's summary row.
func Summarize(in *events.Incident) SummaryRow {
	r := SummaryRow{
		Host: events.Escape(in.Host), Port: in.Proto + " " + events.HostPort(in.Addr, in.Port), State: in.State,
		Cause: in.Cause, Attempts: in.Attempts, Contention: events.Millis(in.ContentionMS), Unserved: "-", Start: stamp(in.Start),
	}
	if in.Netns != 0 {
		r.Netns = fmt.Sprintf("netns %d", in.Netns)
	}
	if r.Cause == "" {
		r.Cause = "-"
	}
	if in.UnservedMS != nil {
		r.Unserved = events.Millis(*in.UnservedMS)
	}
	return r
}

// WriteText writes one block per incident: the port and window, the
// failing processes, the holders and what they were, a timeline relative
// to the first failure, and the diagnosis. Logs merged from several hosts
// first get a block naming the incidents seen on several of them (Spreads).
func WriteText(w io.Writer, incidents []*events.Incident) error {
	var b strings.Builder
	if len(incidents) > 1 {
		writeSummary(&b, incidents)
	}
	if spreads := Spreads(incidents); len(spreads) > 0 {
		b.WriteString("same incident on several hosts:\n")
		for _, s := range spreads {
			b.WriteString("  " + SpreadLine(s) + "\n")
		}
		b.WriteString("\n")
	}
	for i, in := range incidents {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(Title(in) + "\n")
		fmt.Fprintf(&b, "  window:  %s → %s\n", stamp(in.Start), stamp(in.End))
		for _, f := range in.Failing {
			fmt.Fprintf(&b, "  failing: %s: %d attempt%s (%s)\n", events.ProcessShort(&f.Process), f.Attempts, events.Plural(f.Attempts), strings.Join(f.Errnos, "/"))
		}
		if in.FailingOmitted > 0 {
			fmt.Fprintf(&b, "  failing: %d more process%s, not listed\n", in.FailingOmitted, map[bool]string{true: "", false: "es"}[in.FailingOmitted == 1])
		}
		for _, h := range in.Holders {
			fmt.Fprintf(&b, "  holder:  %s — %s\n", holderSummary(&h), h.Kind)
		}
		if in.HoldersOmitted > 0 {
			fmt.Fprintf(&b, "  holder:  %d more, not listed\n", in.HoldersOmitted)
		}
		if in.ReleasedOmitted > 0 {
			fmt.Fprintf(&b, "  released: %d more, not listed\n", in.ReleasedOmitted)
		}
		if len(in.Holders) > 0 && len(in.Signals) == 0 && in.SignalsFolded == 0 && in.Untracked == "" {
			b.WriteString("  signals: none sent to the holder while the incident was open\n")
		}
		b.WriteString("  " + durationsLine(in) + "\n")
		if c := clientsLine(in); c != "" {
			b.WriteString("  " + c + "\n")
		}
		for _, e := range in.Timeline {
			fmt.Fprintf(&b, "  %9s  %-9s %s\n", Offset(e.AtMS), e.Kind, e.Text)
		}
		if o := OmittedLine(in); o != "" {
			b.WriteString("  " + o + "\n")
		}
		if note := timeWaitNote(in); note != "" {
			b.WriteString("  " + note + "\n")
		}
		if in.Diagnosis != "" {
			b.WriteString("  why: " + in.Diagnosis + "\n")
		}
		if label, advice := Advice(in); advice != "" {
			b.WriteString("  " + label + ": " + advice + "\n")
		}
	}
	_, err := io.WriteString(w, terminalSafe(b.String()))
	return err
}

// durationsLine says an incident's durations in the words of the
// timeline page's spans: contention (first failure to recovery: someone
// could not get the port), outage (release to recovery: nothing
// listened) — the only duration called so — and drain (first signal to
// release).
func durationsLine(in *events.Incident) string {
	parts := []string{"contention " + events.Millis(in.ContentionMS) + " (first failure to recovery: someone could not get the port)"}
	switch {
	case in.Untracked != "":
		// Its recovery, if any, was not watched: never "not recovered".
		parts[0] = "contention " + events.Millis(in.ContentionMS) + " (first failure to last attempt; its recovery was not tracked)"
	case in.State != events.IncidentRecovered:
		parts[0] = "contention " + events.Millis(in.ContentionMS) + " (first failure to last attempt; not recovered)"
	}
	switch {
	case in.UnservedMS != nil:
		parts = append(parts, "outage "+events.Millis(*in.UnservedMS)+" (release to recovery: nothing listened)")
	case in.State == events.IncidentRecovered:
		parts = append(parts, "outage not known (the holder's release was not seen)")
	}
	if in.DrainMS != nil {
		parts = append(parts, "drain "+events.Millis(*in.DrainMS)+" (first signal to release)")
	}
	return "durations: " + strings.Join(parts, ", ")
}

// clientsLine says what clients met during the gap, as the kernel
// counted it: "clients: 37 connection attempts refused during the 49ms
// gap"; that it was not measured where the record has no count (a
// kernel before 5.17); "" for an incident not tracked or still open.
func clientsLine(in *events.Incident) string {
	t := events.ImpactText(in.ClientImpact, in.UnservedMS)
	if r := in.ResetConnections; r != nil && r.Count > 0 {
		if t != "" {
			t += "; "
		}
		t += fmt.Sprintf("%d connection%s in the old listener's queue reset at release", r.Count, events.Plural(r.Count))
	}
	if in.ResetUnknown != "" {
		if t != "" {
			t += "; "
		}
		t += "connections reset at release not known: " + in.ResetUnknown
	}
	if t != "" {
		return "clients: " + t
	}
	if in.Untracked != "" || (in.State != events.IncidentRecovered && in.State != events.IncidentAbandoned) {
		return ""
	}
	return "clients: refused connections and dropped datagrams not measured (a kernel before 5.17, or the log of a bindwatch that did not count them)"
}

// writeSummary writes the table a report of several incidents begins
// with: a row each, in the order of the blocks below, with the columns
// of the timeline page's summary.
func writeSummary(b *strings.Builder, incidents []*events.Incident) {
	header := []string{"#", "host", "port", "state", "cause", "attempts", "contention", "unserved (outage)"}
	rows := [][]string{header}
	for i, in := range incidents {
		r := Summarize(in)
		port := r.Port
		if r.Netns != "" {
			port += " (" + r.Netns + ")"
		}
		rows = append(rows, []string{fmt.Sprint(i + 1), events.EscapeCut(in.Host, 24), port, r.State, r.Cause,
			fmt.Sprint(r.Attempts), r.Contention, r.Unserved})
	}
	width := make([]int, len(header))
	for _, row := range rows {
		for c, cell := range row {
			width[c] = max(width[c], utf8.RuneCountInString(cell))
		}
	}
	fmt.Fprintf(b, "%d incidents, each told below in this order:\n", len(incidents))
	for _, row := range rows {
		b.WriteString(" ")
		for c, cell := range row {
			pad := strings.Repeat(" ", width[c]-utf8.RuneCountInString(cell))
			if c == 0 || c >= 5 { // numbers, right-aligned
				b.WriteString(" " + pad + cell)
			} else {
				b.WriteString(" " + cell + pad)
			}
			if c < len(row)-1 {
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// terminalSafe passes text whose lines bindwatch composed from escaped
// fields unchanged, and escapes (events.Escape) any line that still holds
// a control character or invalid UTF-8: report reads logs anyone may have
// written, and a crafted field must not steer the reader's terminal.
func terminalSafe(text string) string {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		body := strings.TrimSuffix(l, "\n")
		if !utf8.ValidString(body) || strings.IndexFunc(body, isControl) >= 0 {
			lines[i] = events.Escape(body) + l[len(body):]
		}
	}
	return strings.Join(lines, "")
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }

func holderSummary(h *events.IncidentHolder) string {
	if len(h.Processes) == 0 {
		return fmt.Sprintf("%s %s (no process)", h.State, h.Addr)
	}
	var names []string
	for _, p := range h.Processes {
		names = append(names, events.ProcessShort(&p))
	}
	s := strings.Join(names, ", ") + " " + h.State
	if h.BoundBy != nil {
		s += ", inherited from " + events.ProcessShort(h.BoundBy)
	}
	if !h.Since.IsZero() {
		s += ", bound at " + stamp(h.Since)
	}
	return s
}

// OmittedLine says what the timeline does not list, or "".
func OmittedLine(in *events.Incident) string {
	if in.TimelineOmitted == 0 {
		return ""
	}
	return fmt.Sprintf("… and %d more entr%s not listed (a timeline keeps its first %d failures and %d kinds of signal; attempts and signals_folded count them all)",
		in.TimelineOmitted, map[bool]string{true: "y", false: "ies"}[in.TimelineOmitted == 1], MaxTimeline, MaxSignalKinds)
}

// Offset renders a time relative to the first failure: "+1.300s".
func Offset(ms int64) string {
	return fmt.Sprintf("+%d.%03ds", ms/1000, ms%1000)
}

func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05.000") }

// timeWaitNote explains how a TIME_WAIT incident ended: the sockets
// expired, or a socket that could reuse the address took the port first.
func timeWaitNote(in *events.Incident) string {
	tw := false
	for _, h := range in.Holders {
		tw = tw || h.State == "TIME_WAIT"
	}
	if !tw {
		return ""
	}
	// When the TIME_WAIT began and ends, as the timeline page draws it.
	when := ""
	for _, h := range in.Holders {
		if h.State == "TIME_WAIT" && !h.Expires.IsZero() {
			when = fmt.Sprintf(" (TIME_WAIT since %s, expires at %s)", signedOffset(h.Expires.Add(-events.TimeWaitLen).Sub(in.Start).Milliseconds()),
				signedOffset(h.Expires.Sub(in.Start).Milliseconds()))
		}
	}
	for _, r := range in.Released {
		if r.How == events.HowExpired {
			return fmt.Sprintf("TIME_WAIT: the sockets expired (the kernel keeps them 60 s), and then the port was free (at %s)", Offset(r.Time.Sub(in.Start).Milliseconds()))
		}
	}
	if in.Recovered != nil {
		return "TIME_WAIT: recovered before the TIME_WAIT expired: the new socket could reuse the address (SO_REUSEADDR on it and on the old socket)" + when
	}
	return "TIME_WAIT: the sockets had not expired when the trace ended" + when
}
