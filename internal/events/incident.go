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
	TypePortFree  = "port_free"
	TypeAbandoned = "abandoned"
	// TypeSignalRepeats folds signals beyond the rate a port and a sender
	// may have recorded one by one.
	TypeSignalRepeats = "signal_repeats"
	// TypeUntracked says a port's incident is not (fully) tracked.
	TypeUntracked = "incident_untracked"
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
	Header
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
	// ResetConnections (a TCP listener's close, seen by the kernel) are
	// the connections the kernel had accepted into the listener's queue
	// and the program never accepted: the kernel reset them at the close
	// (their clients got ECONNRESET). Absent where not measured (a poll's
	// release, UDP), or not known: ResetUnknown says why. A handshake that
	// completes during the close gets a FIN, then the reset (its client
	// reads EOF), and is counted only if it reached the queue. Of an
	// SO_REUSEPORT group, only the listener seen taking the port is
	// followed: the other members' closes are not counted.
	ResetConnections *ImpactCount `json:"reset_connections,omitempty"`
	// ResetUnknown (a TCP listener's close, seen by the kernel) says why
	// ResetConnections is absent although the queue was read: the kernel
	// may have moved the connections to another listener of the socket's
	// SO_REUSEPORT group instead of resetting them (net.ipv4.tcp_migrate_req,
	// or a migrating reuseport program, 5.14+).
	ResetUnknown string `json:"reset_connections_unknown,omitempty"`
}

// ResetMigratable is ResetUnknown for a listener that closed with queued
// connections in its accept queue while the kernel could migrate them.
func ResetMigratable(queued uint64) string {
	return fmt.Sprintf("%d connection%s in the listener's queue as it closed; the kernel may have moved them to another listener of its SO_REUSEPORT group "+
		"(net.ipv4.tcp_migrate_req is 1 in its network namespace, or the group's program migrates) instead of resetting them — unless that listener's queue was full — so how many were reset is not known",
		queued, Plural(queued))
}

// Signal is a signal sent to a process that holds a port with an open
// incident: who sent what to whom, and what became of it.
type Signal struct {
	Header
	Signal string `json:"signal"` // "SIGTERM"
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

// SignalRepeats counts signals of one sender to the holders of one port
// that were not recorded one by one: past SignalBurst a second per port
// and sender (SignalPortBurst per port), a flood is folded, the way
// failures fold. Each sender's first signal in a second is recorded
// whatever the port's rate: a flood does not hide another sender's kill.
type SignalRepeats struct {
	Header
	Proto  string `json:"proto"`
	Netns  uint32 `json:"netns,omitempty"`
	Port   uint16 `json:"port"`
	Signal string `json:"signal"`
	// Sender sent them (pid 0: senders past the bound on how many are
	// followed, together); Target got the first of them.
	Sender Process `json:"sender"`
	Target Process `json:"target"`
	// Result is the kernel's, as in a signal record: a flood's signals
	// are folded per sender, signal and result.
	Result string    `json:"result"`
	Count  uint64    `json:"count"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
}

// Signal rates: see SignalRepeats.
const (
	SignalBurst     = 5
	SignalPortBurst = 50
)

func signalRepeatsText(r *SignalRepeats) string {
	return fmt.Sprintf("%s SIGNALS %d more %s to %s, holder of %s :%d, from %s uid %d, %s to %s (folded)",
		clock(r.Time), r.Count, r.Signal, ProcessShort(&r.Target), r.Proto, r.Port, ProcessShort(&r.Sender), r.Sender.UID,
		clock(r.First), clock(r.Last))
}

// Recovered is the first successful bind() (UDP) or listen() (TCP) on a
// port after its incident opened.
type Recovered struct {
	Header
	Source  string  `json:"source"` // SourceKernel
	Syscall string  `json:"syscall"`
	Proto   string  `json:"proto"`
	Netns   uint32  `json:"netns,omitempty"`
	Addr    string  `json:"addr"`
	Port    uint16  `json:"port"`
	Process Process `json:"process"`
	// SameProcess: a process that failed in the incident got the port (a
	// retry loop); otherwise a new one did (a supervisor's restart).
	SameProcess bool `json:"same_process"`
	// Attempts counts the incident's failures, folded ones included.
	Attempts uint64 `json:"attempts"`
	Durations
	// OutageMS is ContentionMS, under the name it had first (logs already
	// out there are read by it): not the outage, which is UnservedMS.
	OutageMS int64 `json:"outage_ms"`
	ClientImpact
}

// ClientImpact is what clients met at the port during the incident,
// counted in the kernel: connection attempts refused (TCP: a SYN the
// kernel answered with a RST, the client got ECONNREFUSED) and datagrams
// dropped (UDP: ICMP port unreachable) because nothing held the port.
// A kind is absent where the kernel cannot count it (skb:kfree_skb's drop
// reason, Linux 5.17+; the start record's limits.client_impact says so)
// or the port is not its protocol's: absent never means 0.
type ClientImpact struct {
	RefusedConnections *ImpactCount `json:"refused_connections,omitempty"`
	DroppedDatagrams   *ImpactCount `json:"dropped_datagrams,omitempty"`
}

// ImpactCount is how many, and when the first and last were (absent at 0).
type ImpactCount struct {
	Count uint64    `json:"count"`
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
}

// ImpactText says it in one line, for people: "37 connection attempts
// refused during the 49ms gap"; "" when nothing was measured.
func ImpactText(c ClientImpact, unservedMS *int64) string {
	var parts []string
	gap := ""
	if unservedMS != nil {
		gap = " during the " + Millis(*unservedMS) + " gap"
	}
	if r := c.RefusedConnections; r != nil {
		parts = append(parts, fmt.Sprintf("%d connection attempt%s refused%s", r.Count, Plural(r.Count), gap))
	}
	if d := c.DroppedDatagrams; d != nil {
		parts = append(parts, fmt.Sprintf("%d datagram%s dropped for no socket%s", d.Count, Plural(d.Count), gap))
	}
	return strings.Join(parts, "; ")
}

// Durations are an incident's three figures. ContentionMS runs from the
// first failure to the recovery (or the incident's end): how long someone
// could not get the port. UnservedMS runs from the last holder's release
// to the recovery: how long nothing listened — the outage users saw.
// DrainMS runs from the first signal to a holder to that holder's
// release: how long the old instance took to drain. The last two are
// absent where what they start or end from was not seen.
type Durations struct {
	ContentionMS int64  `json:"contention_ms"`
	UnservedMS   *int64 `json:"unserved_ms,omitempty"`
	DrainMS      *int64 `json:"drain_ms,omitempty"`
}

// DurationsText says them for people: "contention 1.418s, outage 49ms
// (nothing listened), drain 603ms". The word outage means UnservedMS.
func DurationsText(d Durations) string {
	s := "contention " + Millis(d.ContentionMS)
	if d.UnservedMS != nil {
		s += ", outage " + Millis(*d.UnservedMS) + " (nothing listened)"
	}
	if d.DrainMS != nil {
		s += ", drain " + Millis(*d.DrainMS)
	}
	return s
}

// PortFree says that a process bound (UDP) or listened on (TCP) a port
// with an open incident and let go of it at once: the port was free at
// that moment, but nobody holds it. bindwatch's own checks do this
// (wait-free, free: a marked test bind+listen, closed at once), as do
// other port probes. It is not a recovery: the incident goes on until
// someone holds the port, and the recovery is theirs.
type PortFree struct {
	Header
	Source  string `json:"source"` // SourceKernel
	Syscall string `json:"syscall"`
	Proto   string `json:"proto"`
	Netns   uint32 `json:"netns,omitempty"`
	Addr    string `json:"addr"`
	Port    uint16 `json:"port"`
	// Process took the port and let go of it.
	Process Process `json:"process"`
}

// Why an incident was abandoned.
const (
	// AbandonedQuiet: no failing process tried for the quiet gap.
	AbandonedQuiet = "quiet"
	// AbandonedExited: every failing process has exited (and none tried
	// for the exit grace since).
	AbandonedExited = "exited"
)

// Abandoned ends an incident that did not recover because nobody tries
// any more: no failing process has tried for the quiet gap, or every one
// of them has exited. The port is no longer watched; a later failure
// opens a new incident.
type Abandoned struct {
	Header
	Proto string `json:"proto"`
	Netns uint32 `json:"netns,omitempty"`
	Addr  string `json:"addr"`
	Port  uint16 `json:"port"`
	// Start is the incident's first failure (which incident of the port
	// this ends), LastAttempt its last.
	Start       time.Time `json:"start"`
	LastAttempt time.Time `json:"last_attempt"`
	Reason      string    `json:"reason"` // AbandonedQuiet or AbandonedExited
	Attempts    uint64    `json:"attempts"`
	// QuietMS is the quiet gap in force.
	QuietMS int64 `json:"quiet_ms"`
	ClientImpact
}

// AbandonedWhy says why, for people: "nobody tried for 10s", "every
// failing process exited".
func AbandonedWhy(reason string, quietMS int64) string {
	if reason == AbandonedExited {
		return "every failing process has exited"
	}
	return "nobody tried for " + Millis(quietMS)
}

func abandonedText(r *Abandoned) string {
	return fmt.Sprintf("%s ABANDONED %s %s: %s (last attempt %s, %d attempt%s since %s); the port did not recover, its incident is over",
		clock(r.Time), r.Proto, HostPort(r.Addr, r.Port), AbandonedWhy(r.Reason, r.QuietMS), clock(r.LastAttempt),
		r.Attempts, Plural(r.Attempts), clock(r.Start))
}

// Tables an incident can be refused a place in.
const (
	// UntrackedIncidents: bindwatch keeps no incident for the port; only
	// its failures tell the story.
	UntrackedIncidents = "incidents"
	// UntrackedKernel: the kernel does not watch the port; no signal,
	// released or recovered record is written for it.
	UntrackedKernel = "kernel"
)

// Why a table refused an incident.
const (
	// UntrackedUserQuota: the failing process's user has as many
	// incidents in the table as one user may (root has no quota).
	UntrackedUserQuota = "user_quota"
	// UntrackedFull: the table is full (for users other than root, the
	// part of it kept for root and the --port ports is not theirs).
	UntrackedFull = "full"
)

// IncidentUntracked says, in-band, that a failure's port got no incident
// of its own (Table "incidents") or that the kernel does not watch it
// (Table "kernel"): every table a user can fill has a bound, a quota per
// user, and says so when it refuses. Written after the failure that was
// refused, once per port until its failures pause for the quiet gap.
type IncidentUntracked struct {
	Header
	Proto string `json:"proto"`
	Netns uint32 `json:"netns,omitempty"`
	Addr  string `json:"addr"`
	Port  uint16 `json:"port"`
	// UID is the failing process's user: quotas are per user.
	UID    uint32 `json:"uid"`
	Table  string `json:"table"`  // UntrackedIncidents or UntrackedKernel
	Reason string `json:"reason"` // UntrackedUserQuota or UntrackedFull
	// Limit is the quota or the table size that was reached.
	Limit int `json:"limit"`
}

// UntrackedWhy says it for people.
func UntrackedWhy(table, reason string) string {
	what := "the incident table was full"
	if table == UntrackedKernel {
		what = "the kernel's table of watched ports was full"
	}
	if reason == UntrackedUserQuota {
		what += " for this user (its quota)"
	}
	return what
}

func untrackedText(r *IncidentUntracked) string {
	lost := "only its failures are reported"
	if r.Table == UntrackedKernel {
		lost = "no signal, release or recovery is recorded for it"
	}
	return fmt.Sprintf("%s INCIDENT NOT TRACKED %s %s (uid %d): %s (limit %d); %s",
		clock(r.Time), r.Proto, HostPort(r.Addr, r.Port), r.UID, UntrackedWhy(r.Table, r.Reason), r.Limit, lost)
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
	// State is "recovered"; "abandoned" when nobody tried any more
	// (AbandonedReason says why); or "open" when the trace ended first.
	State           string `json:"state"`
	AbandonedReason string `json:"abandoned_reason,omitempty"`
	// Untracked (state "untracked") names the table that refused the
	// incident (an incident_untracked record): its signals, release and
	// recovery were not recorded — neither "none sent" nor "not
	// recovered", but not known.
	Untracked       string `json:"untracked,omitempty"`
	UntrackedReason string `json:"untracked_reason,omitempty"`
	// Durations: ContentionMS is Start to End; UnservedMS (recovered
	// only) and DrainMS as in Durations.
	Durations
	// ClientImpact (recovered or abandoned): the recovery's or the
	// abandonment's counts.
	ClientImpact
	// ResetConnections sums the released records' (the first and the
	// last of them); absent when none measured it.
	ResetConnections *ImpactCount `json:"reset_connections,omitempty"`
	// ResetUnknown is the first released record's of those whose resets
	// are not known (the queue may have migrated): ResetConnections then
	// counts only the others.
	ResetUnknown string `json:"reset_connections_unknown,omitempty"`
	// OutageMS is ContentionMS, under its first name.
	OutageMS int64             `json:"outage_ms"`
	Attempts uint64            `json:"attempts"`
	Failing  []IncidentProcess `json:"failing"`
	// FailingOmitted counts failing processes past the incident's cap
	// (their failures still count in Attempts).
	FailingOmitted int              `json:"failing_omitted,omitempty"`
	Holders        []IncidentHolder `json:"holders"`
	// HoldersOmitted counts holders past the incident's cap.
	HoldersOmitted int         `json:"holders_omitted,omitempty"`
	Signals        []*Signal   `json:"signals"`
	Released       []*Released `json:"released"`
	// ReleasedOmitted counts released records past the incident's cap.
	ReleasedOmitted int `json:"released_omitted,omitempty"`
	// Recovered is absent while State is "open".
	Recovered *Recovered `json:"recovered,omitempty"`
	// Timeline lists what happened, at times relative to Start.
	Timeline []TimelineEntry `json:"timeline"`
	// TimelineOmitted counts failure and repeats entries left out of a
	// timeline that reached its cap (they still count in Attempts).
	TimelineOmitted int `json:"timeline_omitted,omitempty"`
	// SignalsFolded counts the signal records not listed in Signals:
	// repeats of a listed kind, counted in its folded timeline entry, and
	// kinds beyond the cap (incident.MaxSignalKinds).
	SignalsFolded uint64 `json:"signals_folded,omitempty"`
	// Cause, Confidence, Diagnosis and Hint are the first failure's.
	Cause      string `json:"cause,omitempty"`
	Confidence string `json:"confidence,omitempty"`
	Diagnosis  string `json:"diagnosis,omitempty"`
	Hint       string `json:"hint,omitempty"`
}

// Incident states.
const (
	IncidentRecovered  = "recovered"
	IncidentOpen       = "open"
	IncidentAbandoned  = "abandoned"
	IncidentNotTracked = "untracked"
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
	// Kind says what it was, by the diagnosis's rules
	// (diagnose.HolderKind): "leftover child", "same program", "another
	// service", "TIME_WAIT"; "orphan" only in logs of versions that
	// called any process under init so.
	Kind   string    `json:"kind"`
	State  string    `json:"state"`
	Addr   string    `json:"addr"`
	Inode  uint64    `json:"inode,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Source string    `json:"source"`
	// Processes own the socket; BoundBy took the port with it and exited.
	Processes []Process `json:"processes"`
	BoundBy   *Process  `json:"bound_by,omitempty"`
	// Expires (TIME_WAIT) is when the last of its sockets expires, as the
	// failures saw their time left; each entered TIME_WAIT TimeWaitLen
	// before it expires.
	Expires time.Time `json:"expires,omitzero"`
}

// TimeWaitLen is how long a TCP socket stays in TIME_WAIT on Linux
// (TCP_TIMEWAIT_LEN): a fixed 60 s, whatever tcp_fin_timeout says.
const TimeWaitLen = 60 * time.Second

// Timeline entry kinds.
const (
	MarkFailure   = "failure"
	MarkRepeats   = "repeats"
	MarkSignal    = "signal"
	MarkReleased  = "released"
	MarkRecovered = "recovered"
	// MarkPortFree: someone took the port and let go at once (PortFree).
	MarkPortFree  = "port_free"
	MarkAbandoned = "abandoned"
	// MarkUntracked: a table refused the incident (IncidentUntracked).
	MarkUntracked = "untracked"
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
	// First and Last (repeats) bound the span its folded failures
	// happened in: the repeats record's first and last (absent in logs
	// of versions before them).
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
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
	if c := r.ResetConnections; c != nil && c.Count > 0 {
		fmt.Fprintf(&b, "; %d connection%s in its queue reset", c.Count, Plural(c.Count))
	}
	if r.ResetUnknown != "" {
		b.WriteString("; resets not known: " + r.ResetUnknown)
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

func portFreeText(r *PortFree) string {
	return fmt.Sprintf("%s PORT FREE %s %s: %s by %s, which let go of it at once (a check such as bindwatch wait-free; not a recovery)",
		clock(r.Time), r.Proto, HostPort(r.Addr, r.Port), r.Syscall, ProcessShort(&r.Process))
}

func recoveredText(r *Recovered) string {
	who := "a new process"
	if r.SameProcess {
		who = "the same process that failed"
	}
	s := fmt.Sprintf("%s RECOVERED %s %s: %s by %s, %s, after %d attempt%s; %s",
		clock(r.Time), r.Proto, HostPort(r.Addr, r.Port), r.Syscall, ProcessShort(&r.Process), who,
		r.Attempts, Plural(r.Attempts), DurationsText(r.Durations))
	if t := ImpactText(r.ClientImpact, r.UnservedMS); t != "" {
		s += "; " + t
	}
	return s
}

// Millis renders a millisecond count as a duration: "1.312s", "300ms".
// The counts are measured spans truncated to whole milliseconds, so 0 is
// a span shorter than one, said "<1ms": "0s" would read as no outage (or
// no contention, no drain) at all, where one was seen — a release and a
// recovery a few hundred microseconds apart.
func Millis(ms int64) string {
	if ms == 0 {
		return "<1ms"
	}
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
