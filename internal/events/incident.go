package events

import (
	"fmt"
	"strings"
	"time"
)

// Records of an incident: a port (netns, proto, port) on which a bind() or
// listen() failed, from its first failure until someone who wanted the port
// holds it again (recovered) or the trace ends. While an incident is open
// the tracer also reports, for that port only, when its holder let go of
// it (released), the signals sent to its holder (signal), and who finally
// got it (recovered).
const (
	TypeReleased  = "released"
	TypeSignal    = "signal"
	TypeRecovered = "recovered"
	TypeIncident  = "incident"
	TypeSpread    = "spread"
)

// Sources of released and recovered records.
const (
	// SourceKernel: a kernel hook saw it happen, at the instant it did.
	SourceKernel = "kernel"
	// SourcePoll: bindwatch looked (sock_diag) and found it done; it
	// happened within PrecisionMS before the record's time.
	SourcePoll = "poll"
)

// How a holder released its port.
const (
	// HowClose: the program closed the socket (close(), shutdown of a
	// listener), and its process lived on.
	HowClose = "close"
	// HowExit: the socket's last owner exited (ExitCode or KilledBy says how).
	HowExit = "exit"
	// HowExpired: a TIME_WAIT socket ran out its time.
	HowExpired = "expired"
	// HowGone: a poll found the socket gone and cannot tell how.
	HowGone = "gone"
)

// Released says the socket that held a port with an open incident stopped
// holding it.
type Released struct {
	Type    string    `json:"type"`
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	// Source is SourceKernel or SourcePoll; a poll's record happened within
	// PrecisionMS before Time.
	Source      string `json:"source"`
	PrecisionMS int64  `json:"precision_ms,omitempty"`
	Proto       string `json:"proto"`
	Netns       uint32 `json:"netns,omitempty"`
	Addr        string `json:"addr"`
	Port        uint16 `json:"port"`
	// State is what the socket was: "LISTEN", "UNCONN", "TIME_WAIT".
	State string `json:"state"`
	How   string `json:"how"` // HowClose, HowExit, HowExpired or HowGone
	// ExitCode (exit) is the exit status the closing task gave; KilledBy
	// the signal that killed it, if one did.
	ExitCode *int   `json:"exit_code,omitempty"`
	KilledBy string `json:"killed_by,omitempty"`
	// Holder is the process that held the port (listen()/bind() it, as
	// recorded by the kernel), where known; Closer the task that closed it.
	Holder *Process `json:"holder,omitempty"`
	Closer *Process `json:"closer,omitempty"`
	// HeldMS is how long the socket held the port, where its bind or
	// listen was seen.
	HeldMS int64 `json:"held_ms,omitempty"`
}

// Signal is a signal sent to a process that holds a port with an open
// incident: who sent what to whom, and what became of it.
type Signal struct {
	Type    string    `json:"type"`
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Signal  string    `json:"signal"` // "SIGTERM"
	// Sender is the task that sent it (the kernel's own signals — a
	// SIGKILL of the OOM killer — come from whatever task was running).
	Sender Process `json:"sender"`
	Target Process `json:"target"`
	// Result is the kernel's: "delivered", "ignored", "already_pending",
	// "overflow", "lose_info".
	Result string `json:"result"`
	Proto  string `json:"proto"`
	Netns  uint32 `json:"netns,omitempty"`
	Port   uint16 `json:"port"`
}

// Recovered is the first successful bind() (UDP) or listen() (TCP) on a
// port after its incident opened.
type Recovered struct {
	Type    string    `json:"type"`
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Source  string    `json:"source"` // SourceKernel
	Syscall string    `json:"syscall"`
	Proto   string    `json:"proto"`
	Netns   uint32    `json:"netns,omitempty"`
	Addr    string    `json:"addr"`
	Port    uint16    `json:"port"`
	Process Process   `json:"process"`
	// SameProcess: a process that failed in the incident got the port (a
	// retry loop); otherwise a new one did (a supervisor's restart).
	SameProcess bool `json:"same_process"`
	// Attempts counts the incident's failures, folded ones included.
	Attempts uint64 `json:"attempts"`
	// OutageMS is the time from the first failure to this record.
	OutageMS int64 `json:"outage_ms"`
}

// Incident is the story of one port's outage, built from the records above
// and the failures (bindwatch report, and the end of bindwatch run).
type Incident struct {
	Type    string    `json:"type"`
	Version int       `json:"version"`
	Host    string    `json:"host"`
	Proto   string    `json:"proto"`
	Netns   uint32    `json:"netns,omitempty"`
	Port    uint16    `json:"port"`
	Addr    string    `json:"addr"`
	Start   time.Time `json:"start"` // the first failure
	End     time.Time `json:"end"`   // recovered, or the trace's end
	// State is "recovered", or "open" when the trace ended first.
	State string `json:"state"`
	// OutageMS is Start to End: how long the port went unserved (at
	// least, while State is "open").
	OutageMS int64             `json:"outage_ms"`
	Attempts uint64            `json:"attempts"`
	Failing  []IncidentProcess `json:"failing"`
	Holders  []IncidentHolder  `json:"holders"`
	Signals  []*Signal         `json:"signals"`
	Released []*Released       `json:"released"`
	// Recovered is absent while State is "open".
	Recovered *Recovered `json:"recovered,omitempty"`
	// Timeline lists what happened, at times relative to Start.
	Timeline []TimelineEntry `json:"timeline"`
	// TimelineOmitted counts failure and repeats entries left out of a
	// timeline that reached its cap (they still count in Attempts).
	TimelineOmitted int `json:"timeline_omitted,omitempty"`
	// Cause, Confidence, Diagnosis and Hint are the first failure's.
	Cause      string `json:"cause,omitempty"`
	Confidence string `json:"confidence,omitempty"`
	Diagnosis  string `json:"diagnosis,omitempty"`
	Hint       string `json:"hint,omitempty"`
}

// Incident states.
const (
	IncidentRecovered = "recovered"
	IncidentOpen      = "open"
)

// IncidentProcess is a process that failed in an incident.
type IncidentProcess struct {
	Process  Process   `json:"process"`
	Attempts uint64    `json:"attempts"` // folded ones included
	Errnos   []string  `json:"errnos"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// IncidentHolder is a socket that held the port during an incident, and
// what it was.
type IncidentHolder struct {
	// Kind says what it was: "leftover child", "orphan", "same program",
	// "another service", "TIME_WAIT".
	Kind   string    `json:"kind"`
	State  string    `json:"state"`
	Addr   string    `json:"addr"`
	Inode  uint64    `json:"inode,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Source string    `json:"source"`
	// Processes own the socket; BoundBy took the port with it and exited.
	Processes []Process `json:"processes"`
	BoundBy   *Process  `json:"bound_by,omitempty"`
}

// Timeline entry kinds.
const (
	MarkFailure   = "failure"
	MarkRepeats   = "repeats"
	MarkSignal    = "signal"
	MarkReleased  = "released"
	MarkRecovered = "recovered"
	MarkEnd       = "end"
)

// TimelineEntry is one moment of an incident.
type TimelineEntry struct {
	AtMS int64     `json:"at_ms"` // since the incident's first failure
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	PID  int       `json:"pid,omitempty"` // who it is about
	// Count is how many failures a failure (1) or repeats mark stands for.
	Count uint64 `json:"count,omitempty"`
	Text  string `json:"text"`
}

func releasedText(r *Released) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s RELEASED %s %s", clock(r.Time), r.Proto, HostPort(r.Addr, r.Port))
	if r.Holder != nil {
		fmt.Fprintf(&b, " by %s", ProcessShort(r.Holder))
	}
	b.WriteString(" " + ReleaseHow(r))
	if r.HeldMS > 0 {
		fmt.Fprintf(&b, " after holding it %s", Millis(r.HeldMS))
	}
	b.WriteString(sourceText(r.Source, r.PrecisionMS))
	return b.String()
}

// ReleaseHow says how a holder let go: "closed it (pid 7 …)", "exited
// (code 0)", "killed by SIGKILL", "TIME_WAIT expired".
func ReleaseHow(r *Released) string {
	switch r.How {
	case HowClose:
		if r.Closer != nil && (r.Holder == nil || r.Closer.PID != r.Holder.PID) {
			return "closed by " + ProcessShort(r.Closer)
		}
		return "closed"
	case HowExit:
		s := "exited"
		if r.KilledBy != "" {
			s = "killed by " + r.KilledBy
		} else if r.ExitCode != nil {
			s += fmt.Sprintf(" (code %d)", *r.ExitCode)
		}
		if r.Closer != nil && (r.Holder == nil || r.Closer.PID != r.Holder.PID) {
			s += ": its last owner " + ProcessShort(r.Closer)
		}
		return s
	case HowExpired:
		return "TIME_WAIT expired"
	}
	return "gone"
}

func sourceText(source string, precisionMS int64) string {
	if source == SourcePoll {
		return fmt.Sprintf(" [seen by poll, within %dms]", precisionMS)
	}
	return ""
}

func signalText(s *Signal) string {
	return fmt.Sprintf("%s SIGNAL %s to %s, holder of %s :%d, from %s uid %d: %s",
		clock(s.Time), s.Signal, ProcessShort(&s.Target), s.Proto, s.Port, ProcessShort(&s.Sender), s.Sender.UID, s.Result)
}

func recoveredText(r *Recovered) string {
	who := "a new process"
	if r.SameProcess {
		who = "the same process that failed"
	}
	return fmt.Sprintf("%s RECOVERED %s %s: %s by %s, %s, after %d attempt%s; outage %s",
		clock(r.Time), r.Proto, HostPort(r.Addr, r.Port), r.Syscall, ProcessShort(&r.Process), who,
		r.Attempts, Plural(r.Attempts), Millis(r.OutageMS))
}

// Millis renders a millisecond count as a duration: "1.312s", "300ms".
func Millis(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

// Spread says the same incident happened on several hosts: the same
// protocol, port, cause, failing program and holder program (a port clash
// rolled out with a deployment shows on every node it reached). bindwatch
// report writes one per such group, after the incidents.
type Spread struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Proto   string `json:"proto"`
	Port    uint16 `json:"port"`
	Cause   string `json:"cause,omitempty"`
	// Failing and Holder are the comm of the first failing process and of
	// the first holder's first process, where known.
	Failing string `json:"failing,omitempty"`
	Holder  string `json:"holder,omitempty"`
	// Hosts had the incident, in the order it began on them (each host
	// once: its first such incident).
	Hosts []SpreadHost `json:"hosts"`
	First time.Time    `json:"first"` // the first host's first failure
	Last  time.Time    `json:"last"`  // the last host's first failure
}

// SpreadHost is one host's incident of a Spread.
type SpreadHost struct {
	Host     string    `json:"host"`
	Start    time.Time `json:"start"`
	State    string    `json:"state"`
	OutageMS int64     `json:"outage_ms"`
}
