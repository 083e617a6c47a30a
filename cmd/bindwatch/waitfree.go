package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/deploy"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

func waitFreeCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait-free",
		Usage:     "wait until ports can be bound (the kernel decides: bindwatch tries)",
		ArgsUsage: "PORT[/tcp|/udp]...",
		Description: `Returns as soon as every PORT can be bound, checked the way the kernel
decides it: bindwatch binds a socket with your program's options (for TCP
it also listens), and closes it at once. TIME_WAIT, SO_REUSEADDR, IPv4 and
IPv6 overlaps are thus judged by the kernel itself, not guessed from ss.
While a port is held it says who holds it — once, then whenever that
changes — on standard error. A PORT without /tcp or /udp means both.
With --format json it writes instead, on standard output, a "held" record
each time and one "wait_free" record per port when waiting ends (fields
in docs/schema.md).

By default each port is checked on 0.0.0.0 and on [::] (dual-stack unless
net.ipv6.bindv6only=1): free means any server could bind it. Give --addr
to check only the addresses your program binds, and --reuseaddr if it sets
SO_REUSEADDR: a port left in TIME_WAIT by a socket that also had it is then
free at once. TIME_WAIT lasts a fixed 60 s on Linux; tcp_fin_timeout does
not shorten it.

A port inside the ephemeral range (net.ipv4.ip_local_port_range) that is
not reserved gets a note even when free: outgoing connections may take it
before your program binds it.

Exit status: 0 when every port can be bound, 1 when one is still held at
--timeout (with who holds it and why) or cannot be bound at all (EACCES,
EADDRNOTAVAIL), 2 on a usage error.

Examples:
  bindwatch wait-free 8080/tcp && ./server --port 8080
  bindwatch wait-free 8080 8443 --timeout 2m
  bindwatch wait-free 8080/tcp --reuseaddr         # the server sets SO_REUSEADDR
  bindwatch wait-free 5353/udp --addr 127.0.0.1
  bindwatch wait-free 8080/tcp --timeout 0          # check once, do not wait
  bindwatch wait-free 8080/tcp --format json >> deploy.jsonl
  sudo bindwatch wait-free 8080/tcp --netns web    # inside container web`,
		Flags: append([]cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up after `DURATION` (0: check once)"},
			netnsFlag,
			formatFlag(),
		}, append(bindFlags(), redactFlags()...)...),
		Action:          waitFreeAction,
		HideHelpCommand: true,
	}
}

func waitFreeAction(c *cli.Context) error {
	ports, err := portArgs(c)
	if err != nil {
		return err
	}
	bind, err := bindOptions(c)
	if err != nil {
		return err
	}
	timeout := c.Duration("timeout")
	if timeout < 0 {
		return usagef("--timeout %v: must not be negative (0 checks once)", timeout)
	}
	env, err := newCommandEnv(c, setup{netns: true, resolver: &resolve.Options{CacheTTL: -1}})
	if err != nil {
		return err
	}
	defer env.Close()
	format, ns, r := env.format, env.netns, env.resolver // ns zero: bindwatch's own

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if format != events.FormatText {
		return waitFreeJSON(ctx, c.App.Writer, format, r, ns, ports, bind, timeout, start)
	}
	waited := false
	report := func(b *deploy.Busy) {
		verb := "is held"
		if waited {
			verb = "is now held"
		}
		wait := ""
		if timeout > 0 {
			wait = fmt.Sprintf("; waiting up to %s", (timeout - time.Since(start)).Round(100*time.Millisecond))
		}
		fmt.Fprintf(os.Stderr, "bindwatch: %s %s (%s)%s:\n", b.Port, verb, b.Refusal.Short(), wait)
		for _, line := range b.Describe(time.Now()) {
			fmt.Fprintf(os.Stderr, "  %s\n", line)
		}
		waited = true
	}
	if timeout == 0 {
		report = nil // checked once: the answer says who holds it
	}
	held, err := deploy.WaitFree(ctx, r, ports, deploy.WaitOptions{Bind: bind, Netns: ns, Report: report})
	switch {
	case err == nil:
		if waited {
			fmt.Fprintf(os.Stderr, "bindwatch: %s free after %s\n", portList(ports), time.Since(start).Round(10*time.Millisecond))
		}
		for _, note := range ephemeralNotes(r, ns, ports) {
			fmt.Fprintf(os.Stderr, "bindwatch: note: %s\n", note)
		}
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return cli.Exit(heldText(held, timeout, bind), 1)
	}
	return err
}

// waitFreeJSON waits as waitFreeAction does, writing a held record each
// time the text mode would say who holds a port, and a wait_free record
// per port at the end. Only errors go to standard error.
func waitFreeJSON(ctx context.Context, out io.Writer, format string, r *resolve.Resolver, ns host.Netns, ports []deploy.Port, bind deploy.BindOptions, timeout time.Duration, start time.Time) error {
	write, err := recordWriter(out, format)
	if err != nil {
		return err
	}
	records := deploy.NewWaitRecords(r, ns, bind, timeout, start)
	var writeErr error
	opts := deploy.WaitOptions{Bind: bind, Netns: ns}
	if timeout > 0 { // checked once: the wait_free record says who holds it
		opts.Report = func(b *deploy.Busy) {
			held := records.Held(b, time.Now())
			if err := write(&held); err != nil && writeErr == nil {
				writeErr = err
			}
		}
	}
	held, waitErr := deploy.WaitFree(ctx, r, ports, opts)
	if waitErr != nil && !errors.Is(waitErr, context.DeadlineExceeded) {
		return waitErr
	}
	for _, rec := range records.End(ports, held, time.Now()) {
		if err := write(&rec); err != nil && writeErr == nil {
			writeErr = err
		}
	}
	if writeErr != nil {
		return fmt.Errorf("write wait-free records: %w (hint: is standard output closed?)", writeErr)
	}
	if waitErr != nil {
		return cli.Exit("", 1) // the wait_free records say who holds what
	}
	return nil
}

// ephemeralNotes warns about each port (once for both protocols) that
// outgoing connections may take: free now is no promise for later. ns is
// where (the zero value: bindwatch's own namespace).
func ephemeralNotes(r *resolve.Resolver, ns host.Netns, ports []deploy.Port) []string {
	if ns.Inode == 0 {
		ns = r.OwnNetns()
	}
	eph, err := r.Ephemeral(ns)
	if err != nil {
		return nil
	}
	var notes []string
	for _, p := range ports {
		if n := resolve.EphemeralNote(eph, p.Num); n != "" && !slices.Contains(notes, n) {
			notes = append(notes, n)
		}
	}
	return notes
}

// heldText is the message for ports still held when waiting ends.
func heldText(held []*deploy.Busy, waited time.Duration, bind deploy.BindOptions) string {
	var sb strings.Builder
	for i, b := range held {
		if i > 0 {
			sb.WriteString("\n")
		}
		still := "is held"
		if waited > 0 {
			still = fmt.Sprintf("is still held after %s", waited)
		}
		fmt.Fprintf(&sb, "%s %s (%s):", b.Port, still, b.Refusal.Short())
		for _, line := range b.Describe(time.Now()) {
			sb.WriteString("\n  " + line)
		}
		if b.Diagnosis != "" {
			sb.WriteString("\n  why: " + b.Diagnosis)
		}
		if b.Hint != "" {
			sb.WriteString("\n  fix: " + b.Hint)
		}
		if b.OnlyTimeWait() && !bind.ReuseAddr {
			sb.WriteString("\n  hint: if your program sets SO_REUSEADDR, check with --reuseaddr: the kernel then lets it bind over TIME_WAIT left by a socket that had it too")
		} else if !b.OnlyTimeWait() {
			fmt.Fprintf(&sb, "\n  hint: `bindwatch free %s` shows what stopping the holder takes; `--kill` does it", b.Port)
		}
	}
	return sb.String()
}
