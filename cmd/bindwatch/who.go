package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

func whoCommand() *cli.Command {
	return &cli.Command{
		Name:      "who",
		Usage:     "show who holds ports right now (no tracing)",
		ArgsUsage: "PORT[/tcp|/udp]...",
		Description: `Lists every socket bound to each PORT — listening, bound but not listening,
connected, and TIME_WAIT — with the processes that have it open (all of
them, when a socket is shared by pre-forked workers or inherited by a
child), their user, command line, cgroup and container. A PORT without
/tcp or /udp is looked up for both.

A port inside the ephemeral range (net.ipv4.ip_local_port_range) that is
not reserved gets a note, held or not: outgoing connections may take it.

Owners are found by BPF iterators over every process's open files. While a
bindwatch tracer (or bindwatch run) runs, who opens the copy it shares under
/sys/fs/bpf/bindwatch instead of loading its own (faster on a host with
many open files; bindwatch doctor says which).

Exit status: 0 when any of the ports is held (TIME_WAIT counts), 1 when
all are free, 2 on a usage error.

Examples:
  sudo bindwatch who 8080                 # tcp and udp port 8080
  sudo bindwatch who 80/tcp 443/tcp 53/udp
  sudo bindwatch who 8080 --format json   # one JSON object per port and protocol
  sudo bindwatch who 5432 --all-netns     # also inside containers and ip netns
  sudo bindwatch who 8080 --netns web     # inside container web (or a pid, /run/netns/NAME)
  bindwatch who 8080 && echo "8080 is taken"`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text, json (one object per line per port and protocol) or ecs (the same as Elastic Common Schema documents). Default: text on a terminal, json otherwise"},
			netnsFlag,
			&cli.BoolFlag{Name: "all-netns", Usage: "look in every network namespace on the host (containers, ip netns), not only bindwatch's own"},
			&cli.BoolFlag{Name: "proc-scan", Usage: "find socket owners by reading /proc/*/fd instead of with the BPF iterator (slower; the fallback when BPF is unavailable)"},
		}, redactFlags()...),
		Action: whoAction,
	}
}

func whoAction(c *cli.Context) error {
	// A one-shot lookup lives ~25 ms and stays near 17 MB, most of it the
	// binary and loading the owner iterator (internal/iterload): collecting
	// garbage on the way would cost milliseconds and free next to nothing. The memory
	// limit still bounds it should a host make it allocate much more.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(256 << 20)
	if !c.Args().Present() {
		return usagef("who needs at least one PORT, e.g. `bindwatch who 8080` or `bindwatch who 53/udp`")
	}
	var queries []whoQuery
	for _, arg := range c.Args().Slice() {
		q, err := parsePortArg(arg)
		if err != nil {
			return usagef("%v", err)
		}
		queries = append(queries, q...)
	}
	iterator := host.BPFCapable() && host.PerfmonCapable()
	env, err := newCommandEnv(c, setup{
		netns:    true,
		resolver: &resolve.Options{NoBPF: c.Bool("proc-scan"), OneShot: true},
		unprivileged: func() string {
			if missing := host.MissingCaps(host.CapDACReadSearch, host.CapSysPtrace); !iterator && missing != "" {
				return fmt.Sprintf("without CAP_BPF and CAP_PERFMON (for the BPF iterator), or %s (to read /proc/PID/fd), which root has: sockets of other users' processes are listed without their processes", missing)
			}
			return ""
		},
	})
	if err != nil {
		return err
	}
	defer env.Close()
	format, netns, r := env.format, env.netns, env.resolver

	namespaces := []host.Netns{r.OwnNetns()}
	if c.Bool("all-netns") {
		namespaces = host.ListNetns()
	}
	if netns.Inode != 0 {
		namespaces = []host.Netns{netns}
	}
	// Outgoing connections may take a port of the ephemeral range at any
	// time: said for the namespace looked in (bindwatch's own with
	// --all-netns), held or not.
	eph, _ := r.Ephemeral(namespaces[0])
	var write func(events.Record) error
	if format != events.FormatText {
		if write, err = recordWriter(c.App.Writer, format); err != nil {
			return err
		}
	}
	// The ephemeral note is said once per port, after its last protocol.
	lastOf := map[uint16]int{}
	for i, q := range queries {
		lastOf[q.port] = i
	}
	hostname, _ := os.Hostname()
	held, warned := false, false
	for i, q := range queries {
		rec, err := r.WhoRecord(namespaces, q.proto, q.port, eph)
		if err != nil {
			return err
		}
		rec.Time, rec.Host = time.Now(), hostname
		if rec.Held {
			// Asked only now: a free port does not wait for the BPF
			// iterator to load.
			method, fallback := r.OwnerLookup()
			// The iterator sees every process; a /proc scan only those
			// whose fds bindwatch may read.
			rec.PartialView = method != resolve.OwnersBPFIter && host.MissingCaps(host.CapDACReadSearch, host.CapSysPtrace) != ""
			if fallback != nil && !warned && !c.Bool("proc-scan") && iterator {
				fmt.Fprintf(os.Stderr, "bindwatch: BPF iterator unavailable (%v); scanning /proc instead\n", fallback)
				warned = true
			}
			rec.OwnerLookup = method
		}
		held = held || rec.Held
		if write != nil {
			if err := write(rec); err != nil {
				return err
			}
		} else {
			if lastOf[q.port] != i {
				rec.EphemeralNote = ""
			}
			rec.WriteText(c.App.Writer, len(namespaces) > 1 || netns.Inode != 0, time.Now())
		}
	}
	if !held {
		return cli.Exit("", 1)
	}
	return nil
}
