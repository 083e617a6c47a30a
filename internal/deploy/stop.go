package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/enrich"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

// StopOptions configure freeing ports.
type StopOptions struct {
	// Bind is how the port will be bound: a port counts as released when
	// Bindable says so.
	Bind BindOptions
	// Signal is sent first; 0 means SIGTERM.
	Signal syscall.Signal
	// Grace is how long to wait for the ports to be released; 0 means 10s.
	Grace time.Duration
	// Force sends SIGKILL to what still runs after Grace.
	Force bool
	// AllNetns frees the ports in every network namespace, and allows
	// signalling processes outside bindwatch's.
	AllNetns bool
	// Netns, if set, frees the ports in that network namespace only, and
	// allows signalling the processes in it (--netns).
	Netns host.Netns
	// Interval between checks; 0 means 100ms.
	Interval time.Duration
}

func (o *StopOptions) defaults() {
	if o.Signal == 0 {
		o.Signal = unix.SIGTERM
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
}

// killWait is how long to wait for the ports after SIGKILL: a killed
// process releases its sockets as soon as it is gone.
const killWait = 5 * time.Second

// Target is one process that holds a socket standing in the way.
type Target struct {
	Process events.Process
	// Sockets are the sockets it holds in the way: "LISTEN 0.0.0.0:8080/tcp".
	Sockets []string
	// Refused says why bindwatch will not signal it; "" when it may.
	Refused string
	// Deaf says, read from /proc/PID/status before any signal, that it
	// will not exit on the first signal: "ignores SIGTERM", "blocks
	// SIGTERM in every thread"; "" when it may.
	Deaf string
	// Managed says, for a process of a systemd service, that its unit may
	// start it again after a signal, and the systemctl command that stops
	// it for good; "" for any other process.
	Managed string
	// HandedOver says it holds a socket another user's process handed it
	// (handedOver), when --force lets it be signalled anyway.
	HandedOver string

	inodes []uint64
	pidfd  int // -1 until opened

	// Sent lists the signals sent, in order.
	Sent []syscall.Signal
	// SignalErr is why a signal could not be sent.
	SignalErr error
	// Exited: the process is gone (ExitedAfter the first signal).
	Exited      bool
	ExitedAfter time.Duration
}

// PortPlan is one port in one network namespace: free, or held, and then
// by which processes and whether signalling them can free it.
type PortPlan struct {
	Port  Port
	Netns host.Netns
	// Busy is who holds it; nil when it is free.
	Busy    *Busy
	Targets []*Target
	// Blocked says why signalling cannot free it; "" when it can (or it
	// is free).
	Blocked string
	// FreedAfter is when it was released, counted from the first signal.
	FreedAfter time.Duration

	// found is who held it when the plan was made, before any signal: in
	// the way of every checked address, not only the first refused one.
	found *Busy
	check *portCheck
}

// Plan is what freeing the ports takes. Close it to release its pidfds.
type Plan struct {
	Ports   []*PortPlan
	Targets []*Target // each process once, in the order found
	opts    StopOptions
	own     uint32 // bindwatch's network namespace
	started time.Time
}

// PlanFree finds, for each port, who keeps it from being bound (in
// bindwatch's network namespace, or opts.Netns; with AllNetns in every one
// where it is held) and which of those processes may be signalled.
func PlanFree(r *resolve.Resolver, ports []Port, opts StopOptions) (*Plan, error) {
	opts.defaults()
	own := r.OwnNetns()
	namespaces := []host.Netns{own}
	g := newGuard(own.Inode, opts.AllNetns)
	switch {
	case opts.AllNetns:
		namespaces = host.ListNetns()
	case opts.Netns.Inode != 0:
		namespaces = []host.Netns{opts.Netns}
		g = newGuard(opts.Netns.Inode, false)
	}
	pl := &Plan{opts: opts, own: own.Inode}
	byPID := map[int]*Target{}
	for _, p := range ports {
		for _, ns := range namespaces {
			c, err := newPortCheck(r, ns, p, opts.Bind)
			var busy *Busy
			if err == nil {
				busy, err = c.check()
			}
			if err != nil {
				if c != nil {
					c.close()
				}
				if ns.Inode != own.Inode {
					continue // gone since it was listed: nothing holds the port there
				}
				pl.Close()
				return nil, err
			}
			if busy == nil && ns.Inode != own.Inode {
				c.close()
				continue
			}
			pp := &PortPlan{Port: p, Netns: ns, Busy: busy, check: c}
			pl.Ports = append(pl.Ports, pp)
			if busy != nil {
				others := c.otherHolders(busy)
				pp.found = withHolders(busy, others)
				pl.plan(pp, others, g, byPID)
			}
		}
	}
	return pl, nil
}

// plan finds the processes behind a held port and whether they may go:
// those of the sockets in the way of its first refused address, and of
// others, which stand in the way of the other addresses.
func (pl *Plan) plan(pp *PortPlan, others []events.Holder, g guard, byPID map[int]*Target) {
	live := pp.Busy.Live()
	for _, h := range others {
		if !slices.ContainsFunc(live, func(l events.Holder) bool { return sameSocket(l, h) }) {
			live = append(live, h)
		}
	}
	if len(live) == 0 {
		pp.Blocked = timeWaitText(pp.Busy, pl.opts.Bind)
		return
	}
	for _, h := range live {
		if len(h.Processes) == 0 {
			pp.Blocked = fmt.Sprintf("%s %s: %s; there is nothing to signal",
				h.State, events.HostPort(h.Addr, h.Port), events.UnownedText(&h))
			continue
		}
		for _, p := range h.Processes {
			t := byPID[p.PID]
			if t == nil {
				t = &Target{Process: p, pidfd: -1, Refused: g.refusal(&p), Deaf: deafTo(p.PID, pl.opts.Signal), Managed: managedBy(&p)}
				byPID[p.PID] = t
				pl.Targets = append(pl.Targets, t)
			}
			if why := handedOver(&h, &p); why != "" && t.Refused == "" && t.HandedOver == "" {
				if pl.opts.Force {
					t.HandedOver = why
				} else {
					t.Refused = why + " (--kill --force signals it anyway)"
				}
			}
			sock := fmt.Sprintf("%s %s/%s", h.State, events.HostPort(h.Addr, h.Port), h.Proto)
			if !slices.Contains(t.Sockets, sock) {
				t.Sockets = append(t.Sockets, sock)
			}
			if h.Inode != 0 && !slices.Contains(t.inodes, h.Inode) {
				t.inodes = append(t.inodes, h.Inode)
			}
			if !slices.Contains(pp.Targets, t) {
				pp.Targets = append(pp.Targets, t)
			}
		}
	}
	if pp.Blocked != "" {
		return
	}
	for _, t := range pp.Targets {
		if t.Refused != "" {
			pp.Blocked = fmt.Sprintf("it is held by %s, which bindwatch will not stop: %s", events.ProcessShort(&t.Process), t.Refused)
			return
		}
	}
}

// managedBy says what systemd may do when p, a process of a service, is
// signalled: its unit's Restart= (read from the system's unit files, not
// asked over D-Bus; unknown for a user's unit or a transient one) and the
// systemctl command that stops the unit instead. "" outside a service.
func managedBy(p *events.Process) string {
	stop := diagnose.ServiceStop(p)
	if stop == "" {
		return ""
	}
	restart := ""
	if p.UnitManager == "" {
		restart = enrich.UnitRestart("/", p.Unit)
	}
	unit := events.Escape(p.Unit)
	switch restart {
	case "":
		return fmt.Sprintf("systemd unit %s, which may start the service again after the signal (its Restart= could not be read): `%s` stops it for good", unit, stop)
	case "no":
		return fmt.Sprintf("systemd unit %s (Restart=no: systemd will not start it again, but the unit is left failed or inactive): `%s` stops it through systemd", unit, stop)
	}
	return fmt.Sprintf("systemd unit %s, whose Restart=%s may start the service again after the signal, and take the port back: `%s` stops it for good", unit, events.Escape(restart), stop)
}

// unitNotes says, once per unit, which of targets run in a systemd
// service and what systemd may do: "pids 42, 43 run in systemd unit …".
// With sent, only the targets that were signalled.
func unitNotes(targets []*Target, sent bool) []string {
	var order []string
	pids := map[string][]string{}
	for _, t := range targets {
		if t.Managed == "" || sent && len(t.Sent) == 0 {
			continue
		}
		if _, ok := pids[t.Managed]; !ok {
			order = append(order, t.Managed)
		}
		pids[t.Managed] = append(pids[t.Managed], strconv.Itoa(t.Process.PID))
	}
	var notes []string
	for _, m := range order {
		who := "pid " + pids[m][0] + " runs"
		if len(pids[m]) > 1 {
			who = "pids " + strings.Join(pids[m], ", ") + " run"
		}
		notes = append(notes, who+" in "+m)
	}
	return notes
}

// deafTo says whether process pid ignores or blocks sig, so that it will
// not exit on it: "ignores SIGTERM", or "".
func deafTo(pid int, sig syscall.Signal) string {
	switch ignored, blocked := host.SignalDisposition(pid, int(sig)); {
	case ignored:
		return "ignores " + SignalName(sig)
	case blocked:
		return "blocks " + SignalName(sig) + " in every thread"
	}
	return ""
}

// handedOver says why p must not be signalled for h without --force, or
// "": the socket belongs to a user other than p's, and not to root. Its
// owner is the user that created it; p did not, and was handed it — a
// user's process passes its listening socket over a unix socket
// (SCM_RIGHTS) to a daemon that keeps what it receives, then closes its
// own copy — so signalling p would stop another user's process (often
// root's) for that user's socket. A socket of root's in a process of
// another user (nginx's workers, a daemon that bound as root and dropped
// privileges) is the normal way round, and no reason to refuse.
func handedOver(h *events.Holder, p *events.Process) string {
	if h.UID == p.UID || h.UID == 0 {
		return ""
	}
	user := func(uid uint32, name string) string {
		if name == "" {
			name = resolve.UserName(uid)
		}
		if name == "" {
			return fmt.Sprintf("uid %d", uid)
		}
		return fmt.Sprintf("uid %d (%s)", uid, events.Escape(name))
	}
	return fmt.Sprintf("the socket %s %s/%s belongs to %s, but %s runs as %s: it did not create the socket, another user's process handed it over (SCM_RIGHTS), and signalling it would stop %s's process for %s's socket",
		h.State, events.HostPort(h.Addr, h.Port), h.Proto, user(h.UID, ""), events.ProcessShort(p), user(p.UID, p.User),
		user(p.UID, p.User), user(h.UID, ""))
}

// timeWaitText explains a port held only by TIME_WAIT sockets: there is
// no process to stop.
func timeWaitText(b *Busy, opts BindOptions) string {
	s := fmt.Sprintf("only TIME_WAIT sockets remain (%d closed connection%s, the last expires in %s), which no process holds. TIME_WAIT lasts a fixed 60 s on Linux (net.ipv4.tcp_fin_timeout does not shorten it); a new socket may bind over it only when both it and the socket that left it set SO_REUSEADDR",
		b.TimeWait.Count, events.Plural(b.TimeWait.Count), events.Seconds(b.TimeWait.MaxRemainingMS))
	if !opts.ReuseAddr {
		s += " (if your program sets SO_REUSEADDR, check with --reuseaddr)"
	}
	return s
}

// Stoppable reports whether signalling can free the port.
func (pp *PortPlan) Stoppable() bool { return pp.Busy != nil && pp.Blocked == "" }

// Held reports whether the port is held (after Stop: still held).
func (pp *PortPlan) Held() bool { return pp.Busy != nil }

// Stop signals the holders of every port that signalling can free, waits
// up to Grace for the ports to be released, sends SIGKILL to the holders
// still running if Force, and checks every port a last time. log receives
// a line for each step. Afterwards each PortPlan's Busy says whether it
// is still held, and each Target what it was sent and whether it exited.
// When ctx ends, it stops waiting (and sends no SIGKILL) but still checks
// every port, and returns ctx's error.
func (pl *Plan) Stop(ctx context.Context, log func(string)) error {
	pl.started = time.Now()
	var stoppable []*PortPlan
	for _, pp := range pl.Ports {
		if pp.Stoppable() {
			stoppable = append(stoppable, pp)
		}
	}
	signalled := map[*Target]bool{}
	for _, pp := range stoppable {
		for _, t := range pp.Targets {
			if signalled[t] {
				continue
			}
			signalled[t] = true
			pl.signal(t, pl.opts.Signal, pp, log)
			if t.Deaf != "" && len(t.Sent) > 0 {
				// Said now, not after the grace period: waiting will not help.
				next := fmt.Sprintf("add --force to send it SIGKILL (bindwatch does not wait the %s grace period for it)", pl.opts.Grace)
				if pl.opts.Force {
					next = "sending SIGKILL without waiting the grace period for it"
				}
				log(fmt.Sprintf("%s: %s %s (/proc/%d/status): it will not exit on it; %s", pp.label(pl.own), events.ProcessShort(&t.Process), t.Deaf, t.Process.PID, next))
			}
		}
	}
	waitErr := pl.wait(ctx, stoppable, pl.opts.Grace)
	if pl.opts.Force && waitErr == nil {
		var kill []*Target
		for _, pp := range stoppable {
			if pp.Busy == nil {
				continue
			}
			for _, t := range pp.Targets {
				if !t.Exited && t.SignalErr == nil && !slices.Contains(kill, t) {
					kill = append(kill, t)
					pl.signal(t, unix.SIGKILL, pp, log)
				}
			}
		}
		if len(kill) > 0 {
			waitErr = pl.wait(ctx, stoppable, killWait)
		}
	}
	// The last word, for every port.
	for _, pp := range pl.Ports {
		busy, err := pp.lastCheck()
		if err != nil {
			return err
		}
		if busy == nil && pp.Busy != nil && pp.FreedAfter == 0 {
			pp.FreedAfter = time.Since(pl.started)
		}
		pp.Busy = busy
	}
	pl.pollExited()
	return waitErr
}

// lastCheck binds the port once more, and once again if the diagnosis is
// that the socket that refused it was gone when bindwatch looked: its
// holder was closing it.
func (pp *PortPlan) lastCheck() (*Busy, error) {
	pp.check.busy = nil // force a real bind
	busy, err := pp.check.check()
	if err != nil || busy == nil || busy.Cause != events.CauseHolderGone {
		return busy, err
	}
	pp.check.busy = nil
	return pp.check.check()
}

// signal sends sig to t through its pidfd, after making sure the pid is
// still the process that holds the socket (not a new process that reused
// the pid): the pidfd pins the process, then its fd table must still hold
// one of the sockets.
func (pl *Plan) signal(t *Target, sig syscall.Signal, pp *PortPlan, log func(string)) {
	if t.pidfd < 0 && !t.Exited {
		fd, err := unix.PidfdOpen(t.Process.PID, 0)
		if errors.Is(err, unix.ESRCH) {
			t.Exited = true
			log(fmt.Sprintf("%s: %s has already exited", pp.label(pl.own), events.ProcessShort(&t.Process)))
			return
		}
		if err != nil {
			t.SignalErr = fmt.Errorf("pidfd_open: %w", err)
			log(fmt.Sprintf("%s: cannot signal %s: %v", pp.label(pl.own), events.ProcessShort(&t.Process), t.SignalErr))
			return
		}
		t.pidfd = fd
		if holds, err := holdsSocket(t.Process.PID, t.inodes); err != nil || !holds {
			why := "it no longer has the socket open (it closed it or exited, and the pid may belong to another process now)"
			if err != nil {
				why = fmt.Sprintf("cannot check it still has the socket open: %v (hint: run with sudo)", err)
			}
			t.SignalErr = errors.New(why)
			log(fmt.Sprintf("%s: not signalling %s: %s", pp.label(pl.own), events.ProcessShort(&t.Process), why))
			return
		}
	}
	if t.Exited || t.SignalErr != nil {
		return
	}
	if t.HandedOver != "" && len(t.Sent) == 0 {
		log(fmt.Sprintf("%s: --force: signalling %s although %s", pp.label(pl.own), events.ProcessShort(&t.Process), t.HandedOver))
	}
	if err := unix.PidfdSendSignal(t.pidfd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			t.Exited = true
			return
		}
		t.SignalErr = fmt.Errorf("send %s: %w", SignalName(sig), err)
		hint := ""
		if errors.Is(err, unix.EPERM) {
			hint = " (hint: it belongs to another user: run with sudo)"
		}
		log(fmt.Sprintf("%s: cannot signal %s: %v%s", pp.label(pl.own), events.ProcessShort(&t.Process), t.SignalErr, hint))
		return
	}
	t.Sent = append(t.Sent, sig)
	log(fmt.Sprintf("%s: sent %s to %s", pp.label(pl.own), SignalName(sig), events.ProcessText(&t.Process, time.Now())))
}

// wait checks the ports until each is free, or all its holders are gone
// or deaf to the signal (what is left, TIME_WAIT, another process or one
// that ignores the signal, will not go by waiting here), or until d has
// passed.
func (pl *Plan) wait(ctx context.Context, ports []*PortPlan, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		pl.pollExited()
		pending := 0
		for _, pp := range ports {
			if pp.Busy == nil {
				continue
			}
			busy, err := pp.check.check()
			if err != nil {
				return err
			}
			pp.Busy = busy
			if busy == nil {
				pp.FreedAfter = time.Since(pl.started)
				continue
			}
			if !pp.allExited() {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pl.opts.Interval):
		}
	}
}

// stillDeaf reports whether t will not exit on what it has been sent: it
// is deaf to the first signal, and no SIGKILL (which nothing is deaf to)
// has followed. A killed process is waited for, or the port would be
// checked before it has died.
func (t *Target) stillDeaf() bool {
	return t.Deaf != "" && !slices.Contains(t.Sent, unix.SIGKILL)
}

func (pp *PortPlan) allExited() bool {
	for _, t := range pp.Targets {
		// One deaf to the signal is not waited for: it will not exit.
		if !t.Exited && t.SignalErr == nil && !t.stillDeaf() {
			return false
		}
	}
	return true
}

// exitingWait is how long a signalled holder whose port is free already is
// given to finish exiting: the kernel closes a dying process's files (and
// so frees its port) before it makes the process a zombie, which is when
// its pidfd becomes readable.
const exitingWait = 200 * time.Millisecond

// pollExited notes which signalled targets have exited: a pidfd becomes
// readable when its process is gone.
func (pl *Plan) pollExited() {
	for _, pp := range pl.Ports {
		for _, t := range pp.Targets {
			if t.pidfd < 0 || t.Exited {
				continue
			}
			timeout := 0
			if pp.Busy == nil && len(t.Sent) > 0 {
				timeout = int(exitingWait.Milliseconds())
			}
			fds := []unix.PollFd{{Fd: int32(t.pidfd), Events: unix.POLLIN}}
			if n, err := unix.Poll(fds, timeout); err == nil && n > 0 {
				t.Exited = true
				t.ExitedAfter = time.Since(pl.started)
			}
		}
	}
}

// Close releases the pidfds and network namespaces.
func (pl *Plan) Close() {
	for _, pp := range pl.Ports {
		pp.check.close()
	}
	for _, t := range pl.Targets {
		if t.pidfd >= 0 {
			unix.Close(t.pidfd)
			t.pidfd = -1
		}
	}
}

// holdsSocket reports whether pid has one of the socket inodes open.
func holdsSocket(pid int, inodes []uint64) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		ino, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64)
		if err == nil && slices.Contains(inodes, n) {
			return true, nil
		}
	}
	return false, nil
}

// SignalName is "SIGTERM" for syscall.SIGTERM.
func SignalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}

// SignalNamed parses "TERM", "SIGTERM", "term" or "15".
func SignalNamed(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d: not a signal number (1-64)", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q (hint: a name like TERM, INT, HUP, QUIT, USR1, or a number)", s)
}

// label names a port plan: "8080/tcp", or "8080/tcp in netns 4026532301"
// outside bindwatch's network namespace.
func (pp *PortPlan) label(own uint32) string {
	if pp.Netns.Inode != own {
		return fmt.Sprintf("%s in netns %d (%s)", pp.Port, pp.Netns.Inode, pp.Netns.Path)
	}
	return pp.Port.String()
}

// WriteDryRun says, port by port, what Stop would signal and what it
// would leave alone, and why.
func (pl *Plan) WriteDryRun(w io.Writer, now time.Time) {
	for _, pp := range pl.Ports {
		label := pp.label(pl.own)
		switch {
		case pp.Busy == nil:
			fmt.Fprintf(w, "%s: free\n", label)
			continue
		case pp.Stoppable():
			fmt.Fprintf(w, "%s: held; --kill would send %s to:\n", label, SignalName(pl.opts.Signal))
			for _, t := range pp.Targets {
				fmt.Fprintf(w, "  %s  [%s]\n", events.ProcessText(&t.Process, now), strings.Join(t.Sockets, ", "))
				if t.Deaf != "" {
					fmt.Fprintf(w, "    it %s: --kill alone will not stop it; --kill --force sends it SIGKILL at once\n", t.Deaf)
				}
				if t.HandedOver != "" {
					fmt.Fprintf(w, "    (with --force, although %s)\n", t.HandedOver)
				}
			}
			for _, note := range unitNotes(pp.Targets, false) {
				fmt.Fprintf(w, "  note: %s\n", note)
			}
		default:
			fmt.Fprintf(w, "%s: held; nothing to stop: %s\n", label, pp.Blocked)
			if !pp.Busy.OnlyTimeWait() { // else the line above says it all
				for _, line := range pp.Busy.Describe(now) {
					fmt.Fprintf(w, "  %s\n", line)
				}
			}
		}
	}
}

// WriteResult says, port by port, how Stop ended: released (when, and
// which holders exited), or still held (by whom, why, and what to do).
func (pl *Plan) WriteResult(w io.Writer, now time.Time) {
	for _, pp := range pl.Ports {
		pl.writeResult(w, pp, now)
		for _, note := range unitNotes(pp.Targets, true) {
			fmt.Fprintf(w, "  note: the signalled %s\n", note)
		}
	}
}

// writeResult says how Stop ended for one port.
func (pl *Plan) writeResult(w io.Writer, pp *PortPlan, now time.Time) {
	label := pp.label(pl.own)
	if pp.Busy == nil {
		if pp.FreedAfter > 0 {
			fmt.Fprintf(w, "%s: free (released after %s%s)\n", label, pp.FreedAfter.Round(time.Millisecond), exitedText(pp.Targets))
		} else {
			fmt.Fprintf(w, "%s: free\n", label)
		}
		return
	}
	hint := pl.stillHeldHint(pp)
	if pp.Busy.OnlyTimeWait() {
		fmt.Fprintf(w, "%s: still held: %s\n", label, hint)
		return
	}
	fmt.Fprintf(w, "%s: still held\n", label)
	for _, line := range pp.Busy.Describe(now) {
		fmt.Fprintf(w, "  %s\n", line)
	}
	if hint != "" {
		fmt.Fprintf(w, "  %s\n", hint)
	}
}

// stillHeldHint says why a port is still held after Stop, and what to do.
func (pl *Plan) stillHeldHint(pp *PortPlan) string {
	if pp.Blocked != "" && pp.Busy.OnlyTimeWait() {
		return pp.Blocked
	}
	if pp.Blocked != "" {
		return "not stopped: " + pp.Blocked
	}
	var survived, unsent []string
	for _, t := range pp.Targets {
		switch {
		case t.SignalErr != nil:
			unsent = append(unsent, fmt.Sprintf("%s: %v", events.ProcessShort(&t.Process), t.SignalErr))
		case !t.Exited && t.stillDeaf():
			survived = append(survived, events.ProcessShort(&t.Process)+", which "+t.Deaf+",")
		case !t.Exited:
			survived = append(survived, events.ProcessShort(&t.Process))
		}
	}
	var parts []string
	if len(unsent) > 0 {
		parts = append(parts, "could not signal "+strings.Join(unsent, "; "))
	}
	if len(survived) > 0 {
		s := fmt.Sprintf("%s still running after %s", strings.Join(survived, ", "), pl.sentText())
		if !pl.opts.Force {
			s += fmt.Sprintf(" (hint: add --force to send SIGKILL to what survives the %s grace period, or raise --grace)", pl.opts.Grace)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 && pp.Busy.OnlyTimeWait() {
		return "its holders exited; " + timeWaitText(pp.Busy, pl.opts.Bind)
	}
	if len(parts) == 0 {
		return "its holders exited, but the port is held again: " + pp.Busy.Diagnosis
	}
	return strings.Join(parts, "; ")
}

func (pl *Plan) sentText() string {
	if pl.opts.Force {
		return SignalName(pl.opts.Signal) + " and SIGKILL"
	}
	return SignalName(pl.opts.Signal)
}

func exitedText(targets []*Target) string {
	var exited []string
	for _, t := range targets {
		if t.Exited && len(t.Sent) > 0 {
			exited = append(exited, fmt.Sprintf("%s exited after %s", events.ProcessShort(&t.Process), SignalName(t.Sent[len(t.Sent)-1])))
		}
	}
	if len(exited) == 0 {
		return ""
	}
	return "; " + strings.Join(exited, ", ")
}
