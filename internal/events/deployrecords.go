package events

import "time"

// Record types written by `bindwatch free` and `bindwatch wait-free` with
// --format json (documented in docs/schema.json).
const (
	TypeFree     = "free"
	TypeWaitFree = "wait_free"
	TypeHeld     = "held"
)

// Action results: what became of one holder process in a free record.
const (
	// ResultExited: the signal was sent and the process exited.
	ResultExited = "exited"
	// ResultStillRunning: the signal was sent and the process was still
	// running when waiting ended (after --grace, or after SIGKILL).
	ResultStillRunning = "still_running"
	// ResultAlreadyExited: the process was gone before the signal.
	ResultAlreadyExited = "already_exited"
	// ResultFailed: the signal could not be sent (Reason says why).
	ResultFailed = "failed"
	// ResultRefused: bindwatch will not signal this process (pid 1,
	// itself, an ancestor, a kernel thread, another network namespace).
	ResultRefused = "refused"
	// ResultSkipped: not signalled because that cannot free the port
	// (another holder of it is refused, or has no visible process).
	ResultSkipped = "skipped"
	// ResultDryRun: not signalled because --kill was not given; --kill
	// would have.
	ResultDryRun = "dry_run"
)

// PortRecord is how every free, held and wait_free record starts: what
// it is, when and where, and which port of which protocol in which network
// namespace it is about.
type PortRecord struct {
	Header
	Port  uint16 `json:"port"`
	Proto string `json:"proto"`
	Netns uint32 `json:"netns"`
}

// FreeRecord is one line of `bindwatch free --format json`: the audit
// trail of one port of one protocol in one network namespace — what held
// it, what was done to each holder process and why, and the final state.
type FreeRecord struct {
	PortRecord
	// Addrs and ReuseAddr are how "free" was checked: a bind on each address.
	Addrs     []string `json:"addrs"`
	ReuseAddr bool     `json:"reuseaddr"`
	// DryRun is true without --kill: nothing was signalled.
	DryRun  bool   `json:"dry_run"`
	Signal  string `json:"signal"` // the first signal, "SIGTERM"
	GraceMS int64  `json:"grace_ms"`
	Force   bool   `json:"force"` // SIGKILL allowed after the grace period

	// Before any signal: the test bind the kernel refused, and who held
	// the port; empty when it was free.
	Refusal  *RefusalRecord `json:"refusal,omitempty"`
	Holders  []Holder       `json:"holders"`
	TimeWait *TimeWait      `json:"time_wait,omitempty"`
	// Cause is why the kernel refused that test bind, one of the Cause*
	// values, as in held and wait_free records; "" when it was free.
	Cause string `json:"cause,omitempty"`
	// Confidence is how firmly the evidence supports Cause (Confidence*).
	Confidence string `json:"confidence,omitempty"`
	// Blocked says why signalling cannot free the port (only TIME_WAIT, a
	// holder bindwatch will not signal, a socket with no visible process).
	Blocked string `json:"blocked,omitempty"`
	// Actions: one per signal sent (a SIGKILL escalation is its own), and
	// one per holder process not signalled, with why.
	Actions []FreeAction `json:"actions"`

	// The final state: after --kill, bound once more; in a dry run, as found.
	Free bool `json:"free"`
	// ReleasedAfterMS: from the first signal to the port being free.
	ReleasedAfterMS int64 `json:"released_after_ms,omitempty"`
	// HoldersAfter and TimeWaitAfter are who holds the port at the end
	// (not in a dry run, which changes nothing; empty when free).
	HoldersAfter  []Holder  `json:"holders_after,omitzero"`
	TimeWaitAfter *TimeWait `json:"time_wait_after,omitempty"`
	// Hint says why a port is still held after --kill, and what to do.
	Hint string `json:"hint,omitempty"`
}

// FreeAction is one signal sent, or not sent, to one holder process.
type FreeAction struct {
	PID     int      `json:"pid"`
	Comm    string   `json:"comm"`
	Cmdline []string `json:"cmdline,omitempty"`
	// CmdlineRedacted: secrets were removed from Cmdline.
	CmdlineRedacted bool      `json:"cmdline_redacted,omitempty"`
	StartTime       time.Time `json:"start_time,omitzero"`
	Signal          string    `json:"signal"`
	Result          string    `json:"result"` // one of the Result constants
	// Reason says why for ResultFailed, ResultRefused and ResultSkipped.
	Reason string `json:"reason,omitempty"`
}

// RefusalRecord is the test bind() or listen() the kernel refused.
type RefusalRecord struct {
	Syscall string `json:"syscall"` // "bind" or "listen"
	Addr    string `json:"addr"`
	Errno   string `json:"errno"`
}

// HoldState is who holds a port and why the kernel refused it, as held
// and wait_free records say it.
type HoldState struct {
	Refusal    *RefusalRecord `json:"refusal,omitempty"`
	Holders    []Holder       `json:"holders"`
	TimeWait   *TimeWait      `json:"time_wait,omitempty"`
	Cause      string         `json:"cause,omitempty"`      // one of the Cause* values
	Confidence string         `json:"confidence,omitempty"` // one of the Confidence* values
	Diagnosis  string         `json:"diagnosis,omitempty"`
	Hint       string         `json:"hint,omitempty"`
}

// WaitFreeRecord is the last word of `bindwatch wait-free --format json`
// on one port of one protocol: free, or who still holds it at --timeout.
type WaitFreeRecord struct {
	PortRecord
	Addrs     []string `json:"addrs"`
	ReuseAddr bool     `json:"reuseaddr"`
	TimeoutMS int64    `json:"timeout_ms"`
	Free      bool     `json:"free"`
	WaitedMS  int64    `json:"waited_ms"`
	// EphemeralNote warns that outgoing connections may take the port
	// (see Who.EphemeralNote), free or not.
	EphemeralNote string `json:"ephemeral_note,omitempty"`
	// Who holds it when waiting ended; empty when free.
	HoldState
}

// HeldRecord is written by `bindwatch wait-free --format json` while it
// waits: a port is held, the first time and whenever its holders change.
// Its refusal is always there.
type HeldRecord struct {
	PortRecord
	WaitedMS int64 `json:"waited_ms"`
	HoldState
}
