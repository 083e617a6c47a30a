package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/deploy"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

func freeCommand() *cli.Command {
	return &cli.Command{
		Name:      "free",
		Usage:     "stop what holds ports, safely (a dry run unless --kill)",
		ArgsUsage: "PORT[/tcp|/udp]...",
		Description: `Finds the processes that keep each PORT from being bound (checked as
wait-free does, by binding it) and, with --kill, stops them: --signal
(SIGTERM) to each, a wait of up to --grace for the port to be released,
then — only with --force — SIGKILL to those still running. A process that
ignores the signal, or blocks it in every thread (SigIgn, SigBlk in
/proc/PID/status), is named up front and not waited for: --force sends it
SIGKILL at once. Without --kill it only shows what it would do. A PORT
without /tcp or /udp means both.

It never signals pid 1, bindwatch itself, its parent or any of its
ancestors (the script running it), kernel threads, or — unless
--all-netns — processes in another network namespace (containers). A
process is signalled through a pidfd, after checking it still has the
socket open, so a pid reused in the meantime is never hit. Nor, without
--force, a process holding a socket that belongs to another user (not
root): it did not create it, another user's process handed it over
(SCM_RIGHTS) — a user cannot make root's daemon a target that way; free
names both and says so. TIME_WAIT
sockets have no process: they are explained, not "killed" (they last a
fixed 60 s; --reuseaddr checks as a program with SO_REUSEADDR binds).

With --format json it writes, on standard output, one "free" record per
port at the end: who held it, each signal sent and its result (a SIGKILL
escalation is its own action), each holder left alone and why, and the
final state (fields in docs/schema.md).

Exit status: 0 when every port is free at the end (for a dry run: is free
now), 1 when one is still held, 2 on a usage error.

Examples:
  bindwatch free 8080                          # dry run: who would be stopped
  sudo bindwatch free 8080/tcp --kill          # SIGTERM, wait up to 10s
  sudo bindwatch free 8080/tcp --kill --force  # then SIGKILL what survives
  sudo bindwatch free 8080/tcp --kill --signal INT --grace 30s
  sudo bindwatch free 5432/tcp --kill --all-netns   # also inside containers
  sudo bindwatch free 8080/tcp --kill --netns web   # inside container web only
  sudo bindwatch free 8080/tcp --kill && ./server --port 8080
  sudo bindwatch free 8080/tcp --kill --format json >> audit.jsonl`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "kill", Usage: "really signal the holders (without it: a dry run)"},
			&cli.StringFlag{Name: "signal", Value: "TERM", Usage: "first `SIGNAL` to send: a name (TERM, INT, HUP, QUIT) or a number"},
			&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: "wait up to `DURATION` for the ports to be released"},
			&cli.BoolFlag{Name: "force", Usage: "with --kill: send SIGKILL to holders still running after --grace, and signal a holder whose socket another user handed it (SCM_RIGHTS; refused without --force)"},
			netnsFlag,
			&cli.BoolFlag{Name: "all-netns", Usage: "free the ports in every network namespace, and signal processes outside bindwatch's (containers)"},
			formatFlag(),
		}, append(bindFlags(), redactFlags()...)...),
		Action:          freeAction,
		HideHelpCommand: true,
	}
}

func freeAction(c *cli.Context) error {
	ports, err := portArgs(c)
	if err != nil {
		return err
	}
	bind, err := bindOptions(c)
	if err != nil {
		return err
	}
	sig, err := deploy.SignalNamed(c.String("signal"))
	if err != nil {
		return usagef("--signal: %v", err)
	}
	if sig == unix.SIGKILL {
		return usagef("--signal KILL: SIGKILL gives no chance to clean up; send a signal that does (TERM) and add --force to send SIGKILL to what survives --grace")
	}
	grace := c.Duration("grace")
	if grace <= 0 {
		return usagef("--grace %v: must be positive", grace)
	}
	kill := c.Bool("kill")
	if c.Bool("force") && !kill {
		return usagef("--force needs --kill (without --kill, free only shows what it would do)")
	}
	env, err := newCommandEnv(c, setup{
		netns:    true,
		ownPids:  true, // holders are signalled by pid
		resolver: &resolve.Options{CacheTTL: -1},
		unprivileged: func() string {
			needed := []int{host.CapDACReadSearch, host.CapSysPtrace}
			if kill {
				needed = append(needed, host.CapKill)
			}
			if missing := host.MissingCaps(needed...); missing != "" {
				return fmt.Sprintf("without %s (root has them), processes of other users cannot be checked or signalled", missing)
			}
			return ""
		},
	})
	if err != nil {
		return err
	}
	defer env.Close()
	format, netns := env.format, env.netns

	plan, err := deploy.PlanFree(env.resolver, ports, deploy.StopOptions{
		Bind: bind, Signal: sig, Grace: grace, Force: c.Bool("force"), AllNetns: c.Bool("all-netns"),
		Netns: netns,
	})
	if err != nil {
		return err
	}
	defer plan.Close()
	out := c.App.Writer
	if format != events.FormatText {
		return freeJSON(plan, out, kill, format)
	}
	if !kill {
		plan.WriteDryRun(out, time.Now())
		if stillHeld(plan) > 0 {
			if anyStoppable(plan) {
				fmt.Fprintf(out, "dry run: nothing was signalled; add --kill to send %s (and --force to SIGKILL what survives --grace)\n", deploy.SignalName(sig))
			} else {
				fmt.Fprintln(out, "dry run: --kill would signal nothing (see above)")
			}
			return cli.Exit("", 1)
		}
		return nil
	}
	if err := stopHolders(plan, func(line string) { fmt.Fprintln(out, line) }); err != nil {
		return err
	}
	plan.WriteResult(out, time.Now())
	if n := stillHeld(plan); n > 0 {
		return cli.Exit(fmt.Sprintf("%d port%s still held (hint: the lines above say who holds each and what to do)", n, events.Plural(n)), 1)
	}
	return nil
}

// freeJSON does what freeAction does (a dry run unless kill) and writes
// a free record per port at the end, in place of the text lines.
func freeJSON(plan *deploy.Plan, out io.Writer, kill bool, format string) error {
	write, err := recordWriter(out, format)
	if err != nil {
		return err
	}
	if kill {
		// The records list every signal: no progress lines.
		if err := stopHolders(plan, func(string) {}); err != nil {
			return err
		}
	}
	for _, rec := range plan.Records(!kill, time.Now()) {
		if err := write(&rec); err != nil {
			return fmt.Errorf("write free records: %w (hint: is standard output closed?)", err)
		}
	}
	if stillHeld(plan) > 0 {
		return cli.Exit("", 1) // the records say who holds what, and why
	}
	return nil
}

// stopHolders runs plan.Stop, logging each step to log. Ctrl-C (or
// SIGTERM) while it waits stops the waiting: the state is still reported.
func stopHolders(plan *deploy.Plan, log func(string)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	if err := plan.Stop(ctx, log); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func stillHeld(plan *deploy.Plan) int {
	n := 0
	for _, pp := range plan.Ports {
		if pp.Held() {
			n++
		}
	}
	return n
}

func anyStoppable(plan *deploy.Plan) bool {
	for _, pp := range plan.Ports {
		if pp.Stoppable() {
			return true
		}
	}
	return false
}
