package deploy

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

func portRecord(typ string, now time.Time, host string, p Port, netns uint32) events.PortRecord {
	return events.PortRecord{Header: events.Header{Type: typ, Version: events.Version, Time: now, Host: host}, Port: p.Num, Proto: p.Proto, Netns: netns}
}

// holdState is b as a events.HoldState.
func holdState(b *Busy) events.HoldState {
	return events.HoldState{Refusal: refusalRecord(b.Refusal), Holders: nonNil(b.Holders), TimeWait: b.TimeWait,
		Cause: b.Cause, Confidence: b.Confidence, Diagnosis: b.Diagnosis, Hint: b.Hint}
}

// Records says, port by port, what Stop did (dryRun false) or what it
// would do (dryRun true, before or instead of Stop).
func (pl *Plan) Records(dryRun bool, now time.Time) []events.FreeRecord {
	host := hostname()
	var recs []events.FreeRecord
	for _, pp := range pl.Ports {
		rec := events.FreeRecord{
			PortRecord: portRecord(events.TypeFree, now, host, pp.Port, pp.Netns.Inode),
			Addrs:      addrStrings(pl.opts.Bind), ReuseAddr: pl.opts.Bind.ReuseAddr,
			DryRun: dryRun, Signal: SignalName(pl.opts.Signal), GraceMS: pl.opts.Grace.Milliseconds(), Force: pl.opts.Force,
			Holders: []events.Holder{}, Blocked: pp.Blocked, Actions: []events.FreeAction{},
			Free: pp.Busy == nil,
		}
		if pp.found != nil {
			rec.Refusal = refusalRecord(pp.found.Refusal)
			rec.Holders = nonNil(pp.found.Holders)
			rec.TimeWait = pp.found.TimeWait
			rec.Cause, rec.Confidence = pp.found.Cause, pp.found.Confidence
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
func (pl *Plan) actions(t *Target, pp *PortPlan, dryRun bool) []events.FreeAction {
	action := func(sig syscall.Signal, result, reason string) events.FreeAction {
		return events.FreeAction{
			PID: t.Process.PID, Comm: t.Process.Comm, Cmdline: t.Process.Cmdline, CmdlineRedacted: t.Process.CmdlineRedacted,
			StartTime: t.Process.StartTime,
			Signal:    SignalName(sig), Result: result, Reason: reason,
		}
	}
	var out []events.FreeAction
	forced := ""
	if t.HandedOver != "" {
		forced = "with --force, although " + t.HandedOver
	}
	for i, sig := range t.Sent {
		result, reason := events.ResultStillRunning, forced
		if i == len(t.Sent)-1 && t.Exited {
			result = events.ResultExited
		}
		if i == 0 && t.Deaf != "" && result == events.ResultStillRunning {
			reason = strings.TrimPrefix(strings.Join([]string{forced, "it " + t.Deaf}, "; "), "; ")
		}
		out = append(out, action(sig, result, reason))
	}
	if t.SignalErr != nil {
		// Stop sends SIGKILL only after the first signal went out.
		sig := pl.opts.Signal
		if len(t.Sent) > 0 {
			sig = unix.SIGKILL
		}
		out = append(out, action(sig, events.ResultFailed, t.SignalErr.Error()))
	}
	if len(out) > 0 {
		return out
	}
	switch {
	case t.Exited: // found gone when it was to be signalled
		return []events.FreeAction{action(pl.opts.Signal, events.ResultAlreadyExited, "")}
	case t.Refused != "":
		return []events.FreeAction{action(pl.opts.Signal, events.ResultRefused, t.Refused)}
	case dryRun && pl.wouldSignal(t):
		reason := forced
		if t.Deaf != "" {
			reason = strings.TrimPrefix(strings.Join([]string{forced, "it " + t.Deaf + ": --kill alone will not stop it"}, "; "), "; ")
		}
		return []events.FreeAction{action(pl.opts.Signal, events.ResultDryRun, reason)}
	}
	return []events.FreeAction{action(pl.opts.Signal, events.ResultSkipped, "signalling it cannot free the port: "+pp.Blocked)}
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
	eph     diagnose.EphemeralPorts
}

// NewWaitRecords describes a WaitFree started at start in network
// namespace ns (the zero value: r's own), with the caller's bind options
// and timeout.
func NewWaitRecords(r *resolve.Resolver, ns host.Netns, bind BindOptions, timeout time.Duration, start time.Time) *WaitRecords {
	if ns.Inode == 0 {
		ns = r.OwnNetns()
	}
	eph, _ := r.Ephemeral(ns) // unknown: no ephemeral_note
	return &WaitRecords{host: hostname(), netns: ns.Inode, bind: bind, timeout: timeout, start: start, eph: eph}
}

// Held says who holds b's port while waiting (WaitOptions.Report).
func (w *WaitRecords) Held(b *Busy, now time.Time) events.HeldRecord {
	return events.HeldRecord{
		PortRecord: portRecord(events.TypeHeld, now, w.host, b.Port, b.Netns.Inode), WaitedMS: now.Sub(w.start).Milliseconds(),
		HoldState: holdState(b),
	}
}

// End says how waiting ended for each port: held are the ports WaitFree
// returned as still held, every other port is free.
func (w *WaitRecords) End(ports []Port, held []*Busy, now time.Time) []events.WaitFreeRecord {
	var recs []events.WaitFreeRecord
	for _, p := range ports {
		rec := events.WaitFreeRecord{
			PortRecord: portRecord(events.TypeWaitFree, now, w.host, p, w.netns), Addrs: addrStrings(w.bind), ReuseAddr: w.bind.ReuseAddr,
			TimeoutMS: w.timeout.Milliseconds(), Free: true, WaitedMS: now.Sub(w.start).Milliseconds(),
			HoldState:     events.HoldState{Holders: []events.Holder{}},
			EphemeralNote: resolve.EphemeralNote(w.eph, p.Num),
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

func refusalRecord(r *Refusal) *events.RefusalRecord {
	return &events.RefusalRecord{Syscall: r.Syscall, Addr: r.Addr.String(), Errno: errnoName(r.Errno)}
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
