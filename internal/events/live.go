package events

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// LiveOptions shape the text a tracer writes while it runs (bindwatch,
// bindwatch run): what a person reads during a deploy.
type LiveOptions struct {
	// Quiet writes failures only: each failure's line, folds and losses,
	// without why/fix and without the start, stop and incident records.
	Quiet bool
	// NoHints leaves out the fix lines.
	NoHints bool
}

// LiveQuietGap is how long a (failing program, port, cause) must go
// without failing for its next failure to get the full why/fix again,
// when no recovery ended its incident first.
const LiveQuietGap = 10 * time.Second

// maxLiveKeys bounds each of LiveText's tables: any user can make new
// programs fail on new ports. A full table only makes the text longer
// (a failure not remembered is written in full), never shorter.
const maxLiveKeys = 4096

// LiveText renders records for a person watching a tracer, one call at a
// time, in the order they are written. A retry loop does not flood the
// terminal: the first failure of a failing program on a port, for one
// cause, is written in full with its why and fix; the next ones, until
// the port's incident ends (its recovered or abandoned record) or the program has not
// failed there for LiveQuietGap, get one short line each, with the
// address, as do folded repeats. It is not safe for concurrent use (a
// sink.File calls it under its lock).
type LiveText struct {
	opts LiveOptions
	// told holds the why/fix blocks written, by program, port and cause.
	told map[blockKey]*toldBlock
	// seen is, per process and port, what its last failure said: the
	// address and block of its folded repeats (which carry neither).
	seen map[foldKey]*seenFailure
	// forgotAt is when forget last walked the tables: a full table is
	// walked at most once per forgetEvery of the records' time, so that a
	// storm of new keys cannot make each record pay for a walk.
	forgotAt time.Time
}

// forgetEvery is how often full tables are walked for quiet entries. An
// entry kept up to this long past its quiet gap only makes the text
// longer (its program's next failure is written in full).
const forgetEvery = time.Second

type blockKey struct {
	netns   uint32
	proto   string
	port    uint16
	program uint64 // a hash: a command line may be 100 KB long
	cause   string
}

type toldBlock struct {
	at   time.Time // when the why/fix was written
	last time.Time // the last failure it covers
}

type foldKey struct {
	pid   int
	proto string
	port  uint16
}

type seenFailure struct {
	addrs []string // the addresses, at most maxFoldAddrs
	block blockKey
	last  time.Time
}

const maxFoldAddrs = 2

// NewLiveText returns a LiveText with options opts.
func NewLiveText(opts LiveOptions) *LiveText {
	return &LiveText{opts: opts, told: map[blockKey]*toldBlock{}, seen: map[foldKey]*seenFailure{}}
}

// Text renders rec; ok is false when nothing is to be written for it
// (Quiet leaves all but failures out).
func (l *LiveText) Text(rec Record) (text string, ok bool) {
	switch r := rec.(type) {
	case *Failure:
		return l.failure(r), true
	case *Repeats:
		return l.repeats(r), true
	case *Recovered:
		l.ended(r.Netns, r.Proto, r.Port)
		if l.opts.Quiet {
			return "", false
		}
	case *Abandoned:
		l.ended(r.Netns, r.Proto, r.Port)
		if l.opts.Quiet {
			return "", false
		}
	case *Lost, *OutputLost:
	default:
		if l.opts.Quiet {
			return "", false
		}
	}
	return Text(rec), true
}

func (l *LiveText) failure(f *Failure) string {
	k := blockKey{netns: f.Process.Netns, proto: f.Proto, port: f.Port, program: program(&f.Process), cause: f.Cause}
	l.remember(f, k)
	if b := l.told[k]; b != nil && f.Time.Sub(b.last) < LiveQuietGap {
		b.last = maxTime(b.last, f.Time)
		return l.again(f, b)
	}
	if len(l.told) >= maxLiveKeys {
		l.forget(f.Time)
	}
	if len(l.told) < maxLiveKeys {
		l.told[k] = &toldBlock{at: f.Time, last: f.Time}
	}
	g := *f
	if l.opts.Quiet {
		g.Diagnosis, g.Hint = "", ""
	}
	if l.opts.NoHints {
		g.Hint = ""
	}
	return failureText(&g)
}

// again is the short line of a failure whose why/fix was written at b.at.
func (l *LiveText) again(f *Failure, b *toldBlock) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s %s %s %s %s pid %d (%s)", clock(f.Time), f.Errno, f.Syscall, f.Proto,
		HostPort(f.Addr, f.Port), f.Process.PID, commOf(&f.Process))
	for i, h := range f.Holders {
		if i == 1 {
			fmt.Fprintf(&s, " +%d more", len(f.Holders)-1)
			break
		}
		s.WriteString(" <- held by ")
		if len(h.Processes) > 0 {
			fmt.Fprintf(&s, "pid %d (%s) ", h.Processes[0].PID, commOf(&h.Processes[0]))
		}
		s.WriteString(h.State)
	}
	what := "again"
	if f.Cause != "" {
		what += ": " + f.Cause
	}
	if f.Diagnosis != "" && !l.opts.Quiet {
		what += ", why/fix as at " + clock(b.at)
	}
	fmt.Fprintf(&s, " (%s)", what)
	return s.String()
}

func (l *LiveText) repeats(r *Repeats) string {
	where := fmt.Sprintf("port %d", r.Port)
	if s := l.seen[foldKey{r.PID, r.Proto, r.Port}]; s != nil {
		hp := make([]string, len(s.addrs))
		for i, a := range s.addrs {
			hp[i] = HostPort(a, r.Port)
		}
		where = strings.Join(hp, " and ")
		if b := l.told[s.block]; b != nil {
			b.last = maxTime(b.last, r.Time) // repeats keep the block's period going
		}
	}
	return fmt.Sprintf("%s %s %s %s %s pid %d (%s) failed the same way %d more time%s (folded in the kernel)",
		clock(r.Time), r.Errno, r.Syscall, r.Proto, where, r.PID, Escape(r.Comm), r.Count, Plural(r.Count))
}

// remember notes f's address and block for its process's folded repeats.
func (l *LiveText) remember(f *Failure, k blockKey) {
	fk := foldKey{f.Process.PID, f.Proto, f.Port}
	s := l.seen[fk]
	if s == nil {
		if len(l.seen) >= maxLiveKeys {
			l.forget(f.Time)
			if len(l.seen) >= maxLiveKeys {
				return
			}
		}
		s = &seenFailure{}
		l.seen[fk] = s
	}
	s.block, s.last = k, maxTime(s.last, f.Time)
	for _, a := range s.addrs {
		if a == f.Addr {
			return
		}
	}
	if len(s.addrs) < maxFoldAddrs {
		s.addrs = append(s.addrs, f.Addr)
	}
}

// ended forgets the blocks of a port whose incident has ended: the next
// failure there opens a new one, and is written in full.
func (l *LiveText) ended(netns uint32, proto string, port uint16) {
	for k := range l.told {
		if k.netns == netns && k.proto == proto && k.port == port {
			delete(l.told, k)
		}
	}
}

// forget drops what has been quiet for LiveQuietGap by now.
func (l *LiveText) forget(now time.Time) {
	if !l.forgotAt.IsZero() && now.Sub(l.forgotAt) < forgetEvery && now.Sub(l.forgotAt) >= 0 {
		return
	}
	l.forgotAt = now
	for k, b := range l.told {
		if now.Sub(b.last) >= LiveQuietGap {
			delete(l.told, k)
		}
	}
	for k, s := range l.seen {
		if now.Sub(s.last) >= LiveQuietGap {
			delete(l.seen, k)
		}
	}
}

// program is what makes two failing processes the same program for the
// live text: the executable and the command line (a supervisor's
// restarts of one service are one program; two scripts of one
// interpreter are two), hashed, so that what a table of maxLiveKeys
// holds stays small whatever the command lines.
func program(p *Process) uint64 {
	h := fnv.New64a()
	exe := p.Exe
	if exe == "" {
		exe = p.Comm
	}
	h.Write([]byte(exe))
	for _, a := range p.Cmdline {
		h.Write([]byte{0})
		h.Write([]byte(a))
	}
	return h.Sum64()
}

// commOf is a process's escaped comm, or "?" .
func commOf(p *Process) string {
	if c := Escape(p.Comm); c != "" {
		return c
	}
	return "?"
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
