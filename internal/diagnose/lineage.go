package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// A holder whose parent is init, or whose socket came from a process that
// has exited, is not by that alone a leftover: every classic daemon (nginx,
// redis --daemonize, memcached -d, a double fork) takes its port, forks,
// and lets its launcher exit with status 0 at once; every systemd
// service's main process has parent 1. What tells a leftover is how the
// instance the socket belonged to ended, as the kernel saw it (the lineage
// map in bpf/bindwatch/holders.h): killed by a signal, failed with a non-zero
// status, or exited long after it forked the holder. Without that evidence
// a holder is the running instance.

// DaemonWindow is how soon after forking the holder a launcher may exit
// with status 0 and still be a daemon handing over. Launchers exit within
// milliseconds; the rest leaves room for a loaded host.
const DaemonWindow = 5 * time.Second

// startTick is how much earlier than the truth /proc may say a process
// started: it counts in clock ticks (USER_HZ, 100 a second), while the
// kernel's own record of the listener is exact (resolve allows the same).
const startTick = 50 * time.Millisecond

// lineage is what the kernel's record says of the instance a holder's
// socket came from.
type lineage struct {
	// leftover: the instance is gone; procs are its leftover processes.
	leftover bool
	// handoff: a launcher took the port and exited at once, handing it to
	// the running daemon; told in the diagnosis.
	handoff bool
	procs   []*events.Process
	// inherited: procs inherited the socket from the process that took
	// the port (bound_by); otherwise procs[0] took it itself and lost its
	// parent (orig_ppid).
	inherited bool
	// who and story say what happened, for the diagnosis: who is
	// "python3 (pids 43, 44)", story "inherited the socket from python3
	// (pid 42), which listened on it and was killed by SIGKILL".
	who, story string
}

// ended says how an instance ended, and whether that makes what it left
// behind a leftover: killed, failed, or exited long after forked (zero:
// unknown).
func ended(e *events.Exit, forked time.Time) (how string, gone bool) {
	switch {
	case e.Signal != "":
		return "was killed by " + events.Escape(e.Signal), true
	case e.Code != nil && *e.Code != 0:
		return fmt.Sprintf("exited with status %d", *e.Code), true
	case !forked.IsZero() && e.Time.Sub(forked) > DaemonWindow:
		return "exited (status 0) " + roughDuration(e.Time.Sub(forked)) + " after starting it", true
	}
	return "exited with status 0 right after starting it", false
}

// judgeLineage reads the kernel's evidence about the holder h, for a
// failure of the process pid.
func judgeLineage(h *events.Holder, pid int) lineage {
	took := "listened on it"
	if h.Proto == "udp" {
		took = "bound it"
	}
	if l := h.BoundBy; l != nil {
		// The processes that inherited the socket from l: started after
		// it (an older one, say the master of a worker l was, cannot).
		var heirs []*events.Process
		for i := range h.Processes {
			p := &h.Processes[i]
			if p.PID != pid && !p.StartTime.IsZero() && (l.StartTime.IsZero() || p.StartTime.After(l.StartTime.Add(-startTick))) {
				heirs = append(heirs, p)
			}
		}
		if len(heirs) == 0 || l.Exit == nil {
			return lineage{}
		}
		how, gone := ended(l.Exit, heirs[0].StartTime)
		return lineage{leftover: gone, handoff: !gone, procs: heirs, inherited: true, who: pidsOf(heirs),
			story: fmt.Sprintf("inherited the socket from %s (pid %d), which %s and %s", commName(l), l.PID, took, how)}
	}
	for i := range h.Processes {
		p := &h.Processes[i]
		if p.PID == pid || p.OrigPPID == 0 || p.OrigParentExit == nil {
			continue
		}
		how, gone := ended(p.OrigParentExit, p.StartTime)
		if !gone {
			how += ": it daemonized"
		}
		return lineage{leftover: gone, handoff: !gone, procs: []*events.Process{p}, who: pidsOf([]*events.Process{p}),
			story: fmt.Sprintf("%s, and its parent then (pid %d) %s (its parent is now pid %d)", took, p.OrigPPID, how, p.PPID)}
	}
	return lineage{}
}

func pidsOf(ps []*events.Process) string {
	var pids []string
	for _, p := range ps {
		pids = append(pids, strconv.Itoa(p.PID))
	}
	if len(ps) == 1 {
		return commName(ps[0]) + " (pid " + pids[0] + ")"
	}
	return commName(ps[0]) + " (pids " + strings.Join(pids, ", ") + ")"
}

// diagnoseLeftover explains a holder left over from an instance the
// kernel saw end: certain when the socket was inherited from the process
// that took the port, likely when the holder took it itself and only its
// parent is gone (that parent may have been a shell the user closed, and
// the process still wanted).
func diagnoseLeftover(f *events.Failure, h *events.Holder, age string) (Verdict, bool) {
	lin := judgeLineage(h, f.Process.PID)
	if !lin.leftover {
		return Verdict{}, false
	}
	p := lin.procs[0]
	stop := ""
	if c := containerStop(p); c != "" {
		stop = c
	} else {
		var pids []string
		for _, q := range lin.procs {
			pids = append(pids, strconv.Itoa(q.PID))
		}
		stop = "kill " + strings.Join(pids, " ") + " (kill -9 only if it ignores SIGTERM)"
	}
	diagnosis := fmt.Sprintf("Port %d/%s is held by a leftover of a previous instance: %s%s, %s.", f.Port, f.Proto, lin.who, age, lin.story)
	if !lin.inherited {
		return likely(verdict(events.CauseLeftover, diagnosis+" It may still be wanted (a server started by hand whose shell has gone).",
			fmt.Sprintf("If it should not run, stop it: %s. To prevent orphans, run it under a service manager that stops the whole cgroup (systemd: KillMode=control-group, the default), or have it exit with its parent (prctl PR_SET_PDEATHSIG).", stop))), true
	}
	prevent := "To prevent it, have the service manager stop the whole cgroup (systemd: KillMode=control-group, the default), and close the listening socket in children that do not serve it."
	if slices.ContainsFunc(lin.procs, func(q *events.Process) bool { return q.Comm != h.BoundBy.Comm }) {
		// A process with another comm than the listener's exec'd after
		// inheriting the socket: only then does close-on-exec apply.
		prevent = "To prevent it, open listening sockets with SOCK_CLOEXEC (so that the programs an instance starts do not inherit them), and have the service manager stop the whole cgroup (systemd: KillMode=control-group, the default)."
	}
	return verdict(events.CauseLeftover, diagnosis, fmt.Sprintf("Stop it: %s. %s", stop, prevent)), true
}

// diagnoseAlreadyRunning explains a holder running the same program as the
// failing process, with no evidence that its instance is gone: a second
// copy was started while the first serves the port. Its hint never kills
// the serving instance.
func diagnoseAlreadyRunning(f *events.Failure, h *events.Holder, facts Facts, now time.Time) (Verdict, bool) {
	var same []*events.Process
	exact := true
	for i := range h.Processes {
		p := &h.Processes[i]
		if ok, ex := sameProgram(p, &f.Process); ok && p.PID != f.Process.PID {
			same = append(same, p)
			exact = exact && ex
		}
	}
	if len(same) == 0 {
		return Verdict{}, false
	}
	// The instance's main process: one whose parent is not another
	// holder (a master, not its workers).
	main := same[0]
	for _, p := range same {
		if !slices.ContainsFunc(h.Processes, func(q events.Process) bool { return q.PID == p.PPID }) {
			main = p
			break
		}
	}
	since := ""
	switch {
	case !h.Since.IsZero():
		since = " since " + h.Since.UTC().Format(time.RFC3339) + " (" + roughDuration(now.Sub(h.Since)) + ")"
	case !main.StartTime.IsZero():
		since = " since " + main.StartTime.UTC().Format(time.RFC3339) + " (" + roughDuration(now.Sub(main.StartTime)) + ")"
	}
	name := commName(main)
	diagnosis := fmt.Sprintf("Port %d/%s is held by %s (pid %d), %s %s%s: it runs the same program as this process (%s) and is serving the port, so this is a second copy started while the first still runs.",
		f.Port, f.Proto, name, main.PID, stateVerb(h), events.HostPort(h.Addr, h.Port), since, programName(main))
	if lin := judgeLineage(h, f.Process.PID); lin.handoff {
		diagnosis += " It is the running daemon: " + lin.who + " " + lin.story + "."
	}
	hint := fmt.Sprintf("%s (pid %d) has been serving this port%s. %s", name, main.PID, since, reloadAdvice(main, h, facts.OwnNetns))
	v := verdict(events.CauseAlreadyRunning, diagnosis, hint)
	if !exact {
		v.Diagnosis += " (bindwatch tells the program by its name only: its executable could not be read.)"
		return likely(v), true
	}
	return v, true
}

// reloadAdvice says how to apply a change to a running instance p, which
// holds h, or stop it, in the words of its manager: a container's
// runtime, its systemd unit, or the program's own commands (a client of
// the port run in p's network namespace unless ownNetns: h is in
// bindwatch's own).
func reloadAdvice(p *events.Process, h *events.Holder, ownNetns bool) string {
	if c := containerStop(p); c != "" {
		return "To change it, redeploy its container, or stop it first: " + c + "; do not start a second copy beside it."
	}
	unit := serviceUnit(p)
	ctl := Systemctl(p)
	reload, stop := "", ""
	switch exe := strings.TrimSuffix(p.Exe, " (deleted)"); {
	case strings.HasSuffix(exe, "/nginx") && nginxDefaultInstance(p):
		reload, stop = "`nginx -s reload`", "`nginx -s quit`"
	case strings.HasSuffix(exe, "/nginx") && unit == "":
		// Its own -s would signal the default configuration's master.
		// Its options are not repeated: they come from a command line
		// any process may write, and root would run them.
		reload = fmt.Sprintf("SIGHUP to its master, pid %d; not `nginx -s reload`, which would signal the nginx of the default configuration: this one was started with its own -c, -p or -g pid", p.PID)
		stop = fmt.Sprintf("SIGQUIT to pid %d, which lets it finish its requests", p.PID)
	case strings.HasSuffix(exe, "/haproxy"):
		reload, stop = fmt.Sprintf("start the new haproxy with `-sf %d` so that it takes over", p.PID), ""
	case (strings.HasSuffix(exe, "/apache2") || strings.HasSuffix(exe, "/httpd")) && startedWithDefaults(p, "", "-f", "-d", "-C", "-c"):
		reload, stop = "`apachectl graceful`", "`apachectl graceful-stop`"
	case (strings.HasSuffix(exe, "/apache2") || strings.HasSuffix(exe, "/httpd")) && unit == "":
		reload = fmt.Sprintf("SIGUSR1 to its parent process, pid %d, a graceful restart; not `apachectl graceful`, which would signal the apache of the default configuration: this one was started with its own -f, -d, -C or -c", p.PID)
		stop = fmt.Sprintf("SIGWINCH to pid %d, a graceful stop", p.PID)
	case strings.HasSuffix(exe, "/redis-server"),
		strings.HasSuffix(exe, "/redis-check-rdb") && p.Comm == "redis-server": // Debian's redis-server is a link to it
		host := ""
		if a, err := netip.ParseAddr(h.Addr); err == nil && !a.IsUnspecified() && a != netip.MustParseAddr("127.0.0.1") {
			host = "-h " + a.String() + " "
		}
		enter := ""
		if !ownNetns {
			enter = fmt.Sprintf("nsenter --net=/proc/%d/ns/net ", p.PID)
		}
		stop = fmt.Sprintf("`%sredis-cli %s-p %d shutdown` (with -a and its password if it has one)", enter, host, h.Port)
	}
	var parts []string
	switch {
	case unit != "" && reload != "":
		parts = append(parts, fmt.Sprintf("Reload it to apply a new configuration (%s, or %s reload %s)", reload, ctl, unit))
	case unit != "":
		parts = append(parts, fmt.Sprintf("Reload or restart it through its unit (%s reload %s, or %s restart %s)", ctl, unit, ctl, unit))
	case reload != "":
		parts = append(parts, "Reload it to apply a new configuration ("+reload+")")
	default:
		parts = append(parts, "Reload or restart it through whatever started it")
	}
	switch {
	case unit != "":
		parts = append(parts, fmt.Sprintf("or stop it first (%s stop %s) before starting another", ctl, unit))
	case stop != "":
		parts = append(parts, fmt.Sprintf("or stop it first (%s, or SIGTERM to pid %d) before starting another", stop, p.PID))
	default:
		parts = append(parts, fmt.Sprintf("or stop it first (SIGTERM to pid %d) before starting another", p.PID))
	}
	return strings.Join(parts, ", ") + "; do not start a second copy beside it."
}

// nginxDefaultInstance reports whether `nginx -s` would signal nginx
// master p (startedWithDefaults): not if started with -c, -p, or a -g
// that sets the pid file. A master's command line is its title ("nginx:
// master process /usr/sbin/nginx -g daemon on; ...").
func nginxDefaultInstance(p *events.Process) bool {
	if !startedWithDefaults(p, "nginx: master process ", "-c", "-p") {
		return false
	}
	args := strings.Fields(strings.Join(p.Cmdline, " "))
	for i, a := range args {
		if strings.HasPrefix(a, "-g") && strings.Contains(strings.Join(args[i:], " "), "pid") {
			return false
		}
	}
	return true
}

// startedWithDefaults reports whether a program's own control command
// (`nginx -s`, `apachectl`) would reach p: such a command finds the
// running instance by the pid file of the default configuration, so p
// must have been started with none of opts, the options that choose
// another (prefixes: "-c/etc/x" counts). title is what the program puts
// before its arguments when it rewrites its command line. A command line
// that cannot be read counts as not.
func startedWithDefaults(p *events.Process, title string, opts ...string) bool {
	args := strings.Fields(strings.TrimPrefix(strings.Join(p.Cmdline, " "), title))
	if len(args) == 0 {
		return false
	}
	for _, a := range args[1:] {
		for _, o := range opts {
			if strings.HasPrefix(a, o) {
				return false
			}
		}
	}
	return true
}

// Holder kinds, as an incident names its holders (HolderKind).
const (
	KindTimeWait       = "TIME_WAIT"
	KindLeftover       = "leftover child"
	KindSameProgram    = "same program"
	KindAnotherService = "another service"
)

// HolderKind says what a holder was to the failing process, by the same
// rules as the diagnosis: a TIME_WAIT socket; a leftover of an instance the
// kernel saw end; the same program (a second copy, or a daemon's running
// instance); or another service.
func HolderKind(h *events.Holder, failing *events.Process) string {
	pid := 0
	if failing != nil {
		pid = failing.PID
	}
	switch {
	case h.State == "TIME_WAIT":
		return KindTimeWait
	case judgeLineage(h, pid).leftover:
		return KindLeftover
	}
	for i := range h.Processes {
		if failing != nil {
			if same, _ := sameProgram(&h.Processes[i], failing); same {
				return KindSameProgram
			}
		}
	}
	return KindAnotherService
}
