package deploy

import (
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

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
	Type    string    `json:"type"` // TypeFree, TypeHeld or TypeWaitFree
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Port    uint16    `json:"port"`
	Proto   string    `json:"proto"`
	Netns   uint32    `json:"netns"`
}

func portRecord(typ string, now time.Time, host string, p Port, netns uint32) PortRecord {
	return PortRecord{Type: typ, Version: events.Version, Time: now, Host: host, Port: p.Num, Proto: p.Proto, Netns: netns}
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
	Refusal  *RefusalRecord   `json:"refusal,omitempty"`
	Holders  []events.Holder  `json:"holders"`
	TimeWait *events.TimeWait `json:"time_wait,omitempty"`
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
	HoldersAfter  []events.Holder  `json:"holders_after,omitzero"`
	TimeWaitAfter *events.TimeWait `json:"time_wait_after,omitempty"`
	// Hint says why a port is still held after --kill, and what to do.
	Hint string `json:"hint,omitempty"`
}

// FreeAction is one signal sent, or not sent, to one holder process.
type FreeAction struct {
	PID       int       `json:"pid"`
	Comm      string    `json:"comm"`
	Cmdline   []string  `json:"cmdline,omitempty"`
	StartTime time.Time `json:"start_time,omitzero"`
	Signal    string    `json:"signal"`
	Result    string    `json:"result"` // one of the Result constants
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
	Refusal   *RefusalRecord   `json:"refusal,omitempty"`
	Holders   []events.Holder  `json:"holders"`
	TimeWait  *events.TimeWait `json:"time_wait,omitempty"`
	Diagnosis string           `json:"diagnosis,omitempty"`
	Hint      string           `json:"hint,omitempty"`
}

// holdState is b as a HoldState.
func holdState(b *Busy) HoldState {
	return HoldState{Refusal: refusalRecord(b.Refusal), Holders: nonNil(b.Holders), TimeWait: b.TimeWait,
		Diagnosis: b.Diagnosis, Hint: b.Hint}
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

// Records says, port by port, what Stop did (dryRun false) or what it
// would do (dryRun true, before or instead of Stop).
func (pl *Plan) Records(dryRun bool, now time.Time) []FreeRecord {
	host := hostname()
	var recs []FreeRecord
	for _, pp := range pl.Ports {
		rec := FreeRecord{
			PortRecord: portRecord(TypeFree, now, host, pp.Port, pp.Netns.Inode),
			Addrs:      addrStrings(pl.opts.Bind), ReuseAddr: pl.opts.Bind.ReuseAddr,
			DryRun: dryRun, Signal: SignalName(pl.opts.Signal), GraceMS: pl.opts.Grace.Milliseconds(), Force: pl.opts.Force,
			Holders: []events.Holder{}, Blocked: pp.Blocked, Actions: []FreeAction{},
			Free: pp.Busy == nil,
		}
		if pp.found != nil {
			rec.Refusal = refusalRecord(pp.found.Refusal)
			rec.Holders = nonNil(pp.found.Holders)
			rec.TimeWait = pp.found.TimeWait
		}
		for _, t := range pp.Targets {
			rec.Actions = append(rec.Actions, pl.actions(t, pp, dryRun)...)
		}
		if !dryRun {
			rec.HoldersAfter = []events.Holder{}
			if pp.FreedAfter > 0 && pp.Busy == nil {
				// Rounded up: a port released at all is never "0 ms".
				rec.ReleasedAfterMS = (pp.FreedAfter + time.Millisecond - 1).Milliseconds()
			}
			if pp.Busy != nil {
				rec.HoldersAfter = nonNil(pp.Busy.Holders)
				rec.TimeWaitAfter = pp.Busy.TimeWait
				rec.Hint = pl.stillHeldHint(pp)
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

// actions says what was sent to t (each signal its own action), or why
// nothing was, as seen from the port plan pp.
func (pl *Plan) actions(t *Target, pp *PortPlan, dryRun bool) []FreeAction {
	action := func(sig syscall.Signal, result, reason string) FreeAction {
		return FreeAction{
			PID: t.Process.PID, Comm: t.Process.Comm, Cmdline: t.Process.Cmdline, StartTime: t.Process.StartTime,
			Signal: SignalName(sig), Result: result, Reason: reason,
		}
	}
	var out []FreeAction
	for i, sig := range t.Sent {
		result := ResultStillRunning
		if i == len(t.Sent)-1 && t.Exited {
			result = ResultExited
		}
		out = append(out, action(sig, result, ""))
	}
	if t.SignalErr != nil {
		// Stop sends SIGKILL only after the first signal went out.
		sig := pl.opts.Signal
		if len(t.Sent) > 0 {
			sig = unix.SIGKILL
		}
		out = append(out, action(sig, ResultFailed, t.SignalErr.Error()))
	}
	if len(out) > 0 {
		return out
	}
	switch {
	case t.Exited: // found gone when it was to be signalled
		return []FreeAction{action(pl.opts.Signal, ResultAlreadyExited, "")}
	case t.Refused != "":
		return []FreeAction{action(pl.opts.Signal, ResultRefused, t.Refused)}
	case dryRun && pl.wouldSignal(t):
		return []FreeAction{action(pl.opts.Signal, ResultDryRun, "")}
	}
	return []FreeAction{action(pl.opts.Signal, ResultSkipped, "signalling it cannot free the port: "+pp.Blocked)}
}

// wouldSignal reports whether Stop signals t: it holds a port that
// signalling can free.
func (pl *Plan) wouldSignal(t *Target) bool {
	for _, pp := range pl.Ports {
		if pp.Stoppable() && slices.Contains(pp.Targets, t) {
			return true
		}
	}
	return false
}

// WaitRecords builds the records of one wait-free run.
type WaitRecords struct {
	host    string
	netns   uint32
	bind    BindOptions
	timeout time.Duration
	start   time.Time
}

// NewWaitRecords describes a WaitFree started at start in r's network
// namespace, with the caller's bind options and timeout.
func NewWaitRecords(r *resolve.Resolver, bind BindOptions, timeout time.Duration, start time.Time) *WaitRecords {
	return &WaitRecords{host: hostname(), netns: r.OwnNetns().Inode, bind: bind, timeout: timeout, start: start}
}

// Held says who holds b's port while waiting (WaitOptions.Report).
func (w *WaitRecords) Held(b *Busy, now time.Time) HeldRecord {
	return HeldRecord{
		PortRecord: portRecord(TypeHeld, now, w.host, b.Port, b.Netns.Inode), WaitedMS: now.Sub(w.start).Milliseconds(),
		HoldState: holdState(b),
	}
}

// End says how waiting ended for each port: held are the ports WaitFree
// returned as still held, every other port is free.
func (w *WaitRecords) End(ports []Port, held []*Busy, now time.Time) []WaitFreeRecord {
	var recs []WaitFreeRecord
	for _, p := range ports {
		rec := WaitFreeRecord{
			PortRecord: portRecord(TypeWaitFree, now, w.host, p, w.netns), Addrs: addrStrings(w.bind), ReuseAddr: w.bind.ReuseAddr,
			TimeoutMS: w.timeout.Milliseconds(), Free: true, WaitedMS: now.Sub(w.start).Milliseconds(),
			HoldState: HoldState{Holders: []events.Holder{}},
		}
		if i := slices.IndexFunc(held, func(b *Busy) bool { return b.Port == p }); i >= 0 {
			b := held[i]
			rec.Free = false
			rec.Netns = b.Netns.Inode
			rec.HoldState = holdState(b)
		}
		recs = append(recs, rec)
	}
	return recs
}

// withHolders returns b with the holders of others added that it does not
// list yet (the same socket seen from another checked address).
func withHolders(b *Busy, others []events.Holder) *Busy {
	merged := *b
	merged.Holders = slices.Clone(b.Holders)
	for _, h := range others {
		if !slices.ContainsFunc(merged.Holders, func(m events.Holder) bool { return sameSocket(m, h) }) {
			merged.Holders = append(merged.Holders, h)
		}
	}
	return &merged
}

// sameSocket reports whether a and b are one socket.
func sameSocket(a, b events.Holder) bool {
	return a.Inode == b.Inode && a.Addr == b.Addr && a.State == b.State
}

func refusalRecord(r *Refusal) *RefusalRecord {
	return &RefusalRecord{Syscall: r.Syscall, Addr: r.Addr.String(), Errno: errnoName(r.Errno)}
}

func addrStrings(opts BindOptions) []string {
	addrs, _ := opts.addrs()
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// nonNil makes a missing list an empty one: "holders": [] in JSON.
func nonNil(hs []events.Holder) []events.Holder {
	if hs == nil {
		return []events.Holder{}
	}
	return hs
}

func hostname() string {
	host, _ := os.Hostname()
	return host
}
