package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"github.com/bindwatch/bindwatch/internal/watch"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// traceFlags are the flags of tracing (bindwatch itself, and bindwatch run).
func traceFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text (one readable line per failure), json (one object per line; fields in docs/schema.md) or ecs (one Elastic Common Schema document per line; docs/ecs.md). Default: text on a terminal, json otherwise"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "append records to `FILE` (created 0640; never through a symlink) instead of standard output; SIGHUP reopens it (logrotate). -, /dev/stdout and /dev/stderr are the standard streams themselves"},
		&cli.StringSliceFlag{Name: "port", Aliases: []string{"p"}, Usage: "only failures on `PORT` or range LO-HI (repeatable, filtered in the kernel)"},
		&cli.StringSliceFlag{Name: "errno", Usage: "only failures with `ERRNO`: EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL or EAGAIN (a UDP autobind; repeatable; default all)"},
		&cli.IntSliceFlag{Name: "pid", Usage: "only failures of process `PID` (repeatable)"},
		&cli.BoolFlag{Name: "follow-children", Usage: "with --pid: also trace every process they fork from now on"},
		&cli.StringFlag{Name: "comm", Usage: "only failures of processes whose command name (as ps -o comm shows it) is `NAME`"},
		&cli.StringFlag{Name: "unit", Usage: "only failures of processes in systemd unit `NAME` (nginx or nginx.service, a .scope or .socket; a user's unit as user@UID.service/NAME), the children it starts included: filtered in user space by each failure's cgroup (the kernel's cgroup id at the failure, so a process that has exited is still placed), not in the kernel — every failure is still read and resolved, and those of other units are counted in the stop record (other_units)"},
		&cli.StringFlag{Name: "netns", Usage: "only failures of processes in the network namespace of `PID|PATH|CONTAINER` (a pid, /run/netns/NAME or NAME, a container's name or id prefix; filtered in the kernel)"},
		&cli.StringFlag{Name: "backend", Value: "auto", Usage: "kernel hook `BACKEND`: auto, fentry, kprobe or tracepoint (auto takes the first that works here; bindwatch doctor says which do)"},
		&cli.DurationFlag{Name: "fold", Value: time.Second, Usage: "report repeats of one process's failure on one port within `WINDOW` as a count, not each (0: report every failure)"},
		&cli.IntFlag{Name: "ring-size", Value: tracer.DefaultRingSize, Usage: "kernel ring buffer `BYTES` (a power of two, at most 256 MiB); failures that find it full are folded, or counted as lost"},
		&cli.BoolFlag{Name: "no-holders", Usage: "do not keep the in-kernel record of who holds each port (TCP listeners, bound UDP sockets): holders are then found only by looking after the failure, and one that exits at once goes unnamed; successful bind()s cost a little less"},
		&cli.StringFlag{Name: "ready-file", Usage: "create `FILE` once tracing is live (for scripts); it must not exist, is never written through a symlink, and is removed on exit"},
		&cli.DurationFlag{Name: "incident-quiet", Value: incident.DefaultQuiet, Usage: "end an incident as abandoned when none of its failing processes has tried for `GAP` (or all of them have exited and none tried for 2s, at most GAP); a later failure opens a new incident"},
		&cli.BoolFlag{Name: "debug", Usage: "print the whole BPF verifier log when loading fails"},
	}, append(outputFlags(), redactFlags()...)...)
}

func traceAction(c *cli.Context) error {
	if c.Args().Present() {
		return unexpectedArgument(c.App, c.Args().First())
	}
	env, err := newCommandEnv(c, setup{redact: true, trace: &traceSetup{unit: true, stream: os.Stdout, streamName: "stdout"}})
	if err != nil {
		return err
	}
	defer env.Close()
	cfg, unit, rules, out := env.tracer, env.unit, env.redact, env.out
	reopenOnHangup(out)
	// Caught before anything a script can see (the start record, the
	// ready file): a signal at any moment from here on ends in a stop record.
	ctx, hurry, release := stopOnSignals()
	defer release()
	s, err := watch.Start(watch.Options{
		Tracer: cfg, Out: out, ReadyFile: c.String("ready-file"), Redact: rules, StopWithin: stopBudget, Hurry: hurry, Unit: unit,
		IncidentQuiet: c.Duration("incident-quiet"),
		// who, free and wait-free open this copy instead of loading their own.
		ShareIterators: true,
		ShareFailed: func(err error) {
			fmt.Fprintf(os.Stderr, "bindwatch: %s\n", watch.NotSharing(err))
		},
		Stopping: func(queued uint64) {
			fmt.Fprintf(os.Stderr, "bindwatch: stopping: %d failure%s still queued, reported for up to %v (a second Ctrl-C or SIGTERM stops at once; the rest is counted as unread)\n",
				queued, events.Plural(queued), stopBudget)
		},
	})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// stopBudget is how long a stop goes on reporting failures still queued
// in the ring buffer: with the detaching, the last folds and the stop
// record, SIGTERM or Ctrl-C ends tracing within a second whatever the
// backlog. What is left is counted as unread in the stop record.
const stopBudget = 500 * time.Millisecond

// stopOnSignals catches SIGINT and SIGTERM: the first ends ctx (a stop
// within stopBudget), a second closes hurry (stop reporting at once; the
// stop record is still written). release lets the signals go.
func stopOnSignals() (ctx context.Context, hurry <-chan struct{}, release func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	hurryCh, done := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			close(hurryCh)
		case <-done:
		}
	}()
	return ctx, hurryCh, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// tracerConfig turns the trace flags into a tracer configuration, or a
// usage error saying which flag is wrong.
func tracerConfig(c *cli.Context) (tracer.Config, error) {
	cfg := tracer.Config{
		Backend:        c.String("backend"),
		Comm:           c.String("comm"),
		FollowChildren: c.Bool("follow-children"),
		Fold:           c.Duration("fold"),
		RingSize:       c.Int("ring-size"),
		Debug:          c.Bool("debug"),
		NoHolders:      c.Bool("no-holders"),
	}
	if arg := c.String("netns"); arg != "" {
		ns, err := netnsArg(arg)
		if err != nil {
			return cfg, err
		}
		cfg.Netns = ns.Inode
	}
	for _, p := range c.StringSlice("port") {
		r, err := parsePortRange(p)
		if err != nil {
			return cfg, usagef("--port %s: %v", p, err)
		}
		cfg.Ports = append(cfg.Ports, r)
	}
	for _, name := range c.StringSlice("errno") {
		e, ok := errnoNamed(name)
		if !ok {
			return cfg, usagef("--errno %s: unknown error (one of EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL, EAGAIN)", name)
		}
		cfg.Errnos = append(cfg.Errnos, e)
	}
	for _, pid := range c.IntSlice("pid") {
		if pid <= 0 || pid > 1<<22 {
			return cfg, usagef("--pid %d: not a process id (a positive number up to %d)", pid, 1<<22)
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			return cfg, usagef("--pid %d: no such process (hint: it must be running when tracing starts; ps -p %d)", pid, pid)
		}
		cfg.PIDs = append(cfg.PIDs, uint32(pid))
	}
	if q := c.Duration("incident-quiet"); q < 100*time.Millisecond {
		return cfg, usagef("--incident-quiet %s: too short to tell a retry from giving up (want 100ms or more; the default is %s)", q, incident.DefaultQuiet)
	}
	if cfg.FollowChildren && len(cfg.PIDs) == 0 {
		return cfg, usagef("--follow-children needs --pid")
	}
	if c.IsSet("ring-size") && cfg.RingSize == 0 {
		return cfg, usagef("--ring-size 0: the ring buffer cannot be empty (want a power of two from %d to %d bytes; without the flag it is %d)", os.Getpagesize(), tracer.MaxRingSize, tracer.DefaultRingSize)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err: err}
	}
	return cfg, nil
}

func errnoNamed(name string) (syscall.Errno, bool) {
	for _, e := range tracer.Errnos {
		if strings.EqualFold(events.ErrnoName(e), name) {
			return e, true
		}
	}
	return 0, false
}

// unitArg checks --unit's NAME and spells it as records name units
// (watch.Options.Unit): a bare name is a service ("nginx" is
// nginx.service), as systemctl takes it.
func unitArg(arg string) (string, error) {
	if arg == "" {
		return "", nil
	}
	manager, name, user := strings.Cut(arg, "/")
	if !user {
		manager, name = "", arg
	}
	bad := func(why string) error {
		return usagef("--unit %s: %s (hint: a unit as systemctl status names it, e.g. nginx.service, or user@1000.service/app.service for a user's; systemd-cgls shows them)", events.Escape(arg), why)
	}
	if user {
		uid, ok := strings.CutPrefix(manager, "user@")
		uid, ok2 := strings.CutSuffix(uid, ".service")
		if _, err := strconv.ParseUint(uid, 10, 32); !ok || !ok2 || err != nil {
			return "", bad("a user's unit is user@UID.service/NAME")
		}
	}
	if name == "" || strings.ContainsAny(name, "/") || name == "." || name == ".." || strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return "", bad("not a unit name")
	}
	if !strings.HasSuffix(name, ".service") && !strings.HasSuffix(name, ".scope") && !strings.HasSuffix(name, ".socket") {
		if strings.HasSuffix(name, ".slice") || strings.HasSuffix(name, ".target") || strings.HasSuffix(name, ".timer") || strings.HasSuffix(name, ".mount") {
			return "", bad("only a service, scope or socket has processes of its own")
		}
		name += ".service"
	}
	if user {
		return manager + "/" + name, nil
	}
	return name, nil
}
