package deploy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

// Busy is a port the caller cannot bind, and who holds it.
type Busy struct {
	*Refusal
	Netns host.Netns
	// Holders are the sockets on the port whose address overlaps the
	// refused one (as the kernel's conflict check sees it), listeners
	// first; connections and TIME_WAIT sockets only the first few.
	Holders  []events.Holder
	TimeWait *events.TimeWait
	// Cause, Diagnosis and Hint are the diagnosis: an events.Cause*
	// value, why the kernel refused, what to do.
	Cause, Confidence, Diagnosis, Hint string
}

// Live returns the holders that are not TIME_WAIT: sockets some process
// (or the kernel) still has open.
func (b *Busy) Live() []events.Holder {
	var out []events.Holder
	for _, h := range b.Holders {
		if h.State != "TIME_WAIT" {
			out = append(out, h)
		}
	}
	return out
}

// OnlyTimeWait reports whether nothing but TIME_WAIT sockets (closed
// connections the kernel keeps for 60 s) stands in the way.
func (b *Busy) OnlyTimeWait() bool { return len(b.Live()) == 0 && b.TimeWait != nil }

// key identifies who holds the port, to report it again only on change.
func (b *Busy) key() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s|", b.Syscall, b.Addr)
	for _, h := range b.Live() {
		fmt.Fprintf(&sb, "%s %s %d", h.State, h.Addr, h.Inode)
		for _, p := range h.Processes {
			fmt.Fprintf(&sb, " %d", p.PID)
		}
		sb.WriteString(";")
	}
	if b.TimeWait != nil {
		sb.WriteString("TIME_WAIT")
	}
	return sb.String()
}

// Explain finds who makes the kernel refuse ref in the network namespace
// ns: the resolver lists the port's sockets whose address overlaps the
// refused one, and diagnoses the refusal as if a program with the
// checked options had failed.
func Explain(r *resolve.Resolver, ns host.Netns, ref *Refusal) (*Busy, error) {
	f := events.Failure{
		Header:  events.Header{Type: events.TypeFailure, Version: events.Version},
		Syscall: ref.Syscall, Errno: errnoName(ref.Errno), ErrnoCode: int(ref.Errno),
		Proto: ref.Port.Proto, Family: "ipv4", Addr: ref.Addr.String(), Port: ref.Port.Num,
		Socket:  events.Socket{ReuseAddr: ref.ReuseAddr, V6Only: ref.V6Only},
		Process: events.Process{PID: os.Getpid(), Netns: ns.Inode},
	}
	if ref.Addr.Is6() {
		f.Family = "ipv6"
	}
	if err := r.Resolve(&f); err != nil {
		return nil, fmt.Errorf("find who holds %s: %w", ref.Port, err)
	}
	// Diagnose again as a program that is not bindwatch: the resolver
	// filled in bindwatch's own process (its cgroup, its parent), and a
	// holder sharing those is no leftover of the program checked for.
	f.Process = events.Process{PID: os.Getpid(), UID: uint32(os.Geteuid()), Netns: ns.Inode}
	facts := diagnose.Facts{OwnNetns: ns.Inode == r.OwnNetns().Inode}
	facts.Ephemeral, _ = r.Ephemeral(ns) // unknown: an outgoing connection is named, not explained
	v := diagnose.Diagnose(&f, facts, time.Now())
	return &Busy{Refusal: ref, Netns: ns, Holders: f.Holders, TimeWait: f.TimeWait, Cause: v.Cause, Confidence: v.Confidence, Diagnosis: v.Diagnosis, Hint: v.Hint}, nil
}

// WaitOptions configure WaitFree.
type WaitOptions struct {
	Bind BindOptions
	// Netns is where to check; the zero value is bindwatch's own.
	Netns host.Netns
	// Interval between checks; 0 means 100ms.
	Interval time.Duration
	// Report, if set, is called with a port that is still held: the first
	// time, and whenever who holds it changes.
	Report func(*Busy)
}

// WaitFree returns as soon as every port can be bound at once (each
// checked with Bindable in one pass), or when ctx is done: then it
// returns why each port still held is held, and ctx's error. Any other
// error is a check that could not be made, or a refusal that waiting
// cannot cure (EACCES, EADDRNOTAVAIL), returned as is.
func WaitFree(ctx context.Context, r *resolve.Resolver, ports []Port, opts WaitOptions) ([]*Busy, error) {
	interval := opts.Interval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	ns := opts.Netns
	if ns.Inode == 0 {
		ns = r.OwnNetns()
	}
	checks := make([]*portCheck, len(ports))
	reported := make([]string, len(ports))
	for i, p := range ports {
		c, err := newPortCheck(r, ns, p, opts.Bind)
		if err != nil {
			return nil, err
		}
		defer c.close()
		checks[i] = c
	}
	for {
		allFree := true
		for i, c := range checks {
			busy, err := c.check()
			if err != nil {
				return nil, err
			}
			if busy == nil {
				continue
			}
			allFree = false
			if k := busy.key(); k != reported[i] {
				reported[i] = k
				if opts.Report != nil {
					opts.Report(busy)
				}
			}
		}
		if allFree {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			var held []*Busy
			for _, c := range checks {
				if c.busy == nil {
					continue
				}
				// Say who holds it now, not when it was found held.
				if fresh, err := Explain(c.r, c.ns, c.busy.Refusal); err == nil {
					c.busy = fresh
				}
				held = append(held, c.busy)
			}
			return held, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// recheckEvery is how often a held port is bound again although its
// sockets, as sock_diag lists them, did not change.
const recheckEvery = time.Second

// portCheck checks one port in one network namespace again and again.
// A port found held is bound again only when its sockets change (or
// every recheckEvery): each refused bind is a failure that a bindwatch
// tracing this host reports, and one per change says enough.
type portCheck struct {
	r     *resolve.Resolver
	ns    host.Netns
	netns *os.File // nil: bindwatch's own
	port  Port
	opts  BindOptions

	busy    *Busy     // the last answer; nil: free
	sockets string    // sock_diag's view when busy was found
	bound   time.Time // when Bindable last ran
}

func newPortCheck(r *resolve.Resolver, ns host.Netns, p Port, opts BindOptions) (*portCheck, error) {
	f, err := openNetns(ns, r.OwnNetns().Inode)
	if err != nil {
		return nil, err
	}
	return &portCheck{r: r, ns: ns, netns: f, port: p, opts: opts}, nil
}

func (c *portCheck) close() {
	if c.netns != nil {
		c.netns.Close()
		c.netns = nil
	}
}

// check returns nil when the port can be bound now, else who holds it.
// A refusal other than EADDRINUSE is an error: waiting does not cure it.
func (c *portCheck) check() (*Busy, error) {
	if c.busy != nil && time.Since(c.bound) < recheckEvery {
		if key, err := socketsKey(c.r, c.ns, c.port); err == nil && key == c.sockets {
			return c.busy, nil
		}
	}
	before, _ := socketsKey(c.r, c.ns, c.port)
	ref, err := Bindable(c.netns, c.port, c.opts)
	if err != nil {
		return nil, err
	}
	c.bound = time.Now()
	if ref == nil {
		c.busy = nil
		return nil, nil
	}
	if !ref.InUse() {
		return nil, fmt.Errorf("%s: the kernel refused %s on %s with %s, which waiting does not change (hint: %s)",
			c.port, ref.Syscall, ref.Addr, errnoName(ref.Errno), ref.Hint())
	}
	busy, err := Explain(c.r, c.ns, ref)
	if err != nil {
		return nil, err
	}
	c.busy, c.sockets = busy, before
	return busy, nil
}

// otherHolders returns the live holders in the way of the checked
// addresses after the one busy was refused on: Bindable stops at the first
// refusal, but freeing a port must clear every address. Best effort:
// an address that cannot be checked adds nothing.
func (c *portCheck) otherHolders(busy *Busy) []events.Holder {
	addrs, _ := c.opts.addrs()
	var out []events.Holder
	for _, addr := range addrs {
		if addr == busy.Addr {
			continue
		}
		ref, err := Bindable(c.netns, c.port, BindOptions{Addrs: []netip.Addr{addr}, ReuseAddr: c.opts.ReuseAddr})
		if err != nil || ref == nil || !ref.InUse() {
			continue
		}
		if b, err := Explain(c.r, c.ns, ref); err == nil {
			out = append(out, b.Live()...)
		}
	}
	return out
}

// socketsKey is every socket on the port as sock_diag lists it: if it is
// the same as when the port was refused, binding again would be refused
// again.
func socketsKey(r *resolve.Resolver, ns host.Netns, p Port) (string, error) {
	rep, err := r.Who(ns, p.Proto, p.Num)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d|", rep.Sockets)
	if rep.TimeWait != nil {
		fmt.Fprintf(&sb, "tw %d|", rep.TimeWait.Count)
	}
	var lines []string
	for _, h := range rep.Holders {
		if h.State == "TIME_WAIT" {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %s %d %d %s %s", h.State, h.Addr, h.Inode, h.UID, flag(h.ReuseAddr), flag(h.ReusePort)))
	}
	slices.Sort(lines)
	sb.WriteString(strings.Join(lines, ";"))
	return sb.String(), nil
}

func flag(b *bool) string {
	switch {
	case b == nil:
		return "?"
	case *b:
		return "1"
	}
	return "0"
}
