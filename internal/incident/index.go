package incident

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// incidentIndex is what the Builder knows of one open incident beyond the
// record itself.
type incidentIndex struct {
	holders map[string]bool // holderKey of each holder (with and without its inode)
	signals map[signalKey]*signalFold
	// timeWait is the place in Holders of the TIME_WAIT holder of each
	// address (timeWaitExpires).
	timeWait map[string]int
}

func (b *Builder) indexOf(in *events.Incident) *incidentIndex {
	if b.index == nil {
		b.index = map[*events.Incident]*incidentIndex{}
	}
	x := b.index[in]
	if x == nil {
		x = &incidentIndex{holders: map[string]bool{}, signals: map[signalKey]*signalFold{}, timeWait: map[string]int{}}
		b.index[in] = x
	}
	return x
}

// holderKey names a holder for addHolder: its state, address, socket
// (inode, 0 for any) and the pids of its processes.
func holderKey(state, addr string, inode uint64, procs []events.Process) string {
	var k strings.Builder
	k.WriteString(state)
	k.WriteByte('|')
	k.WriteString(addr)
	k.WriteByte('|')
	k.WriteString(strconv.FormatUint(inode, 10))
	for _, p := range procs {
		k.WriteByte('|')
		k.WriteString(strconv.Itoa(p.PID))
	}
	return k.String()
}

// MaxSignalKinds caps the kinds of signal an incident lists one by one:
// a kind is a signal with its result, to one target, from one user's one
// program. The first of each kind is listed (Signals, and its timeline
// entry); the next are folded into one timeline entry that counts them,
// as repeated failures are. Signals of kinds beyond the cap are only
// counted (SignalsFolded, TimelineOmitted). A user flooding a holder with
// SIGHUP from thousands of processes is one kind, and the SIGTERM that
// ended the outage stays its own line.
const MaxSignalKinds = 100

// signalKey is a kind of signal (MaxSignalKinds).
type signalKey struct {
	signal, result string
	target         int
	uid            uint32
	comm           string
}

// signalFold is what was folded of one kind of signal.
type signalFold struct {
	entry   int // its folded entry's place in Timeline; -1: none yet; -2: none to be
	count   uint64
	senders map[int]bool // the pids that sent them, up to maxFoldSenders
	more    bool         // more senders than that
}

const maxFoldSenders = 64

// signal adds a signal to an open incident: listed if it is the first of
// its kind, else folded and counted. A live builder keeps no command line.
func (b *Builder) signal(in *events.Incident, r *events.Signal) {
	if b.live {
		c := *r
		c.Sender, c.Target = trimmed(&r.Sender), trimmed(&r.Target)
		r = &c
	}
	x := b.indexOf(in)
	k := signalKey{r.Signal, r.Result, r.Target.PID, r.Sender.UID, r.Sender.Comm}
	f := x.signals[k]
	if f == nil && len(x.signals) >= MaxSignalKinds {
		in.SignalsFolded++
		in.TimelineOmitted++
		b.extend(in, r.Time)
		return
	}
	if f == nil {
		x.signals[k] = &signalFold{entry: -1, senders: map[int]bool{}}
		in.Signals = append(in.Signals, r)
		b.mark(in, r.Time, events.MarkSignal, r.Target.PID, 0, signalLine(r))
		return
	}
	b.foldSignals(in, f, r, 1)
}

// signalRepeats adds the signals the tracer folded (signal_repeats) to
// their kind's count, as if each had come.
func (b *Builder) signalRepeats(in *events.Incident, r *events.SignalRepeats) {
	s := &events.Signal{Header: events.Header{Type: events.TypeSignal, Version: r.Version, Time: r.Last, Host: r.Host}, Signal: r.Signal,
		Sender: r.Sender, Target: r.Target, Result: r.Result, Proto: r.Proto, Netns: r.Netns, Port: r.Port}
	if b.live {
		s.Sender, s.Target = trimmed(&r.Sender), trimmed(&r.Target)
	}
	x := b.indexOf(in)
	k := signalKey{s.Signal, s.Result, s.Target.PID, s.Sender.UID, s.Sender.Comm}
	f := x.signals[k]
	if f == nil && len(x.signals) >= MaxSignalKinds {
		in.SignalsFolded += r.Count
		in.TimelineOmitted++
		b.extend(in, r.Last)
		return
	}
	if f == nil {
		f = &signalFold{entry: -1, senders: map[int]bool{}}
		x.signals[k] = f
	}
	b.foldSignals(in, f, s, r.Count)
}

// foldSignals counts n more signals of f's kind, the last of them r: in
// the kind's one timeline entry (made at the first fold), and in
// SignalsFolded.
func (b *Builder) foldSignals(in *events.Incident, f *signalFold, r *events.Signal, n uint64) {
	in.SignalsFolded += n
	f.count += n
	if len(f.senders) < maxFoldSenders {
		f.senders[r.Sender.PID] = true
	} else if !f.senders[r.Sender.PID] {
		f.more = true
	}
	switch {
	case f.entry == -1:
		if !b.mark(in, r.Time, events.MarkSignal, r.Target.PID, 0, "") {
			f.entry = -2 // no entry (a live builder, or past the timeline's budget): counted only
			return
		}
		f.entry = len(in.Timeline) - 1
	case f.entry == -2:
		b.extend(in, r.Time)
		return
	default:
		b.extend(in, r.Time)
	}
	e := &in.Timeline[f.entry]
	e.Count = f.count
	e.Text = foldedSignalLine(r, f, r.Time.Sub(in.Start).Milliseconds())
}

// foldedSignalLine: "41 more SIGHUP to pid 7 (old) from flood uid 65534
// (3 processes): delivered, folded, the last at +9.870s".
func foldedSignalLine(r *events.Signal, f *signalFold, lastMS int64) string {
	senders := fmt.Sprintf("pid %d", r.Sender.PID)
	if n := len(f.senders); n > 1 || f.more {
		senders = fmt.Sprintf("%d processes", n)
		if f.more {
			senders = fmt.Sprintf("more than %d processes", n)
		}
	}
	return fmt.Sprintf("%d more %s to %s from %s uid %d (%s): %s, folded, the last at %s", f.count, r.Signal,
		events.ProcessShort(&r.Target), events.EscapeCut(r.Sender.Comm, 80), r.Sender.UID, senders, r.Result, Offset(lastMS))
}
