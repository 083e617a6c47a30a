package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

// whoRecord is one line of `bindwatch who --format json`: who holds one
// port of one protocol, in bindwatch's network namespace or, with
// --all-netns, in all of them (each holder carries its netns).
type whoRecord struct {
	Type     string           `json:"type"` // "who"
	Version  int              `json:"version"`
	Port     uint16           `json:"port"`
	Proto    string           `json:"proto"`
	Held     bool             `json:"held"`
	Holders  []events.Holder  `json:"holders"`
	TimeWait *events.TimeWait `json:"time_wait,omitempty"`
	// Sockets counts every socket on the port; Holders lists all
	// listening and bound ones but only the first few connections and
	// TIME_WAIT sockets.
	Sockets int `json:"sockets"`
	// Netns lists the network namespaces searched (inodes).
	Netns []uint32 `json:"netns"`
	// OwnerLookup: how owners were found, "bpf_iter" or "proc_scan";
	// absent for a free port.
	OwnerLookup string `json:"owner_lookup,omitempty"`
}

// whoQuery is one PORT[/PROTO] argument, expanded to one protocol.
type whoQuery struct {
	port  uint16
	proto string
}

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

Exit status: 0 when any of the ports is held (TIME_WAIT counts), 1 when
all are free, 2 on a usage error.

Examples:
  sudo bindwatch who 8080                 # tcp and udp port 8080
  sudo bindwatch who 80/tcp 443/tcp 53/udp
  sudo bindwatch who 8080 --format json   # one JSON object per port and protocol
  sudo bindwatch who 5432 --all-netns     # also inside containers and ip netns
  bindwatch who 8080 && echo "8080 is taken"`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text or json (one object per line per port and protocol). Default: text on a terminal, json otherwise"},
			&cli.BoolFlag{Name: "all-netns", Usage: "look in every network namespace on the host (containers, ip netns), not only bindwatch's own"},
			&cli.BoolFlag{Name: "proc-scan", Usage: "find socket owners by reading /proc/*/fd instead of with the BPF iterator (slower; the fallback when BPF is unavailable)"},
		},
		Action: whoAction,
	}
}

func whoAction(c *cli.Context) error {
	// A one-shot lookup lives ~25 ms and stays near 16 MB, most of it
	// decoding the kernel's BTF to load the owner iterator: collecting
	// garbage on the way costs ~4 ms and frees next to nothing. The memory
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
	format, err := outputFormat(c, os.Stdout)
	if err != nil {
		return err
	}
	if c.Bool("all-netns") && os.Geteuid() != 0 {
		return fmt.Errorf("--all-netns needs root (entering other network namespaces takes CAP_SYS_ADMIN): run it with sudo")
	}

	r, err := resolve.New(resolve.Options{NoBPF: c.Bool("proc-scan")})
	if err != nil {
		return err
	}
	defer r.Close()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bindwatch: not root: sockets of other users' processes are listed without their processes (run with sudo)")
	}

	namespaces := []resolve.Netns{r.OwnNetns()}
	if c.Bool("all-netns") {
		namespaces = resolve.ListNetns()
	}
	held, warned := false, false
	for _, q := range queries {
		rec, err := whoPort(r, namespaces, q)
		if err != nil {
			return err
		}
		if rec.Held {
			// Asked only now: a free port does not wait for the BPF
			// iterator to load.
			method, fallback := r.OwnerLookup()
			if fallback != nil && !warned && !c.Bool("proc-scan") && os.Geteuid() == 0 {
				fmt.Fprintf(os.Stderr, "bindwatch: BPF iterator unavailable (%v); scanning /proc instead\n", fallback)
				warned = true
			}
			rec.OwnerLookup = method
		}
		held = held || rec.Held
		if format == "json" {
			if err := json.NewEncoder(c.App.Writer).Encode(rec); err != nil {
				return err
			}
		} else {
			writeWhoText(c.App.Writer, rec, len(namespaces) > 1, time.Now())
		}
	}
	if !held {
		return cli.Exit("", 1)
	}
	return nil
}

// parsePortArg reads "8080", "8080/tcp" or "53/udp"; a bare port means
// both protocols.
func parsePortArg(arg string) ([]whoQuery, error) {
	portStr, proto, hasProto := strings.Cut(arg, "/")
	n, err := strconv.Atoi(portStr)
	if err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("port %q: want a number from 1 to 65535, optionally with /tcp or /udp (e.g. 8080/tcp)", portStr)
	}
	port := uint16(n)
	if !hasProto {
		return []whoQuery{{port, "tcp"}, {port, "udp"}}, nil
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" {
		return nil, fmt.Errorf("%q: protocol %q is not supported (use /tcp or /udp)", arg, proto)
	}
	return []whoQuery{{port, proto}}, nil
}

// whoPort looks up one port in every namespace and merges the answers.
// A namespace that vanished while being searched is skipped.
func whoPort(r *resolve.Resolver, namespaces []resolve.Netns, q whoQuery) (*whoRecord, error) {
	rec := &whoRecord{Type: "who", Version: events.Version, Port: q.port, Proto: q.proto, Holders: []events.Holder{}}
	var tw events.TimeWait
	for _, ns := range namespaces {
		rep, err := r.Who(ns, q.proto, q.port)
		if err != nil {
			if len(namespaces) == 1 {
				return nil, err
			}
			continue
		}
		rec.Netns = append(rec.Netns, rep.Netns.Inode)
		rec.Sockets += rep.Sockets
		rec.Holders = append(rec.Holders, rep.Holders...)
		if rep.TimeWait != nil {
			tw.Count += rep.TimeWait.Count
			tw.MaxRemainingMS = max(tw.MaxRemainingMS, rep.TimeWait.MaxRemainingMS)
		}
	}
	if tw.Count > 0 {
		rec.TimeWait = &tw
	}
	rec.Held = rec.Sockets > 0
	return rec, nil
}

// writeWhoText prints one port as people read it: the port and whether it
// is held, then a line per socket and a line per owning process.
func writeWhoText(w io.Writer, rec *whoRecord, showNetns bool, now time.Time) {
	if !rec.Held {
		fmt.Fprintf(w, "%d/%s: free\n", rec.Port, rec.Proto)
		return
	}
	fmt.Fprintf(w, "%d/%s: held (%d socket%s)\n", rec.Port, rec.Proto, rec.Sockets, events.Plural(rec.Sockets))
	listedTW := 0
	for _, h := range rec.Holders {
		if h.State == "TIME_WAIT" {
			listedTW++
			continue
		}
		line := fmt.Sprintf("  %-11s %s", h.State, events.HostPort(h.Addr, h.Port))
		if h.Inode != 0 {
			line += fmt.Sprintf("  inode %d", h.Inode)
		}
		line += fmt.Sprintf("  uid %d", h.UID)
		if h.ReuseAddr != nil {
			line += "  reuseaddr=" + events.OnOff(*h.ReuseAddr)
		}
		if h.ReusePort != nil {
			line += "  reuseport=" + events.OnOff(*h.ReusePort)
		}
		if h.V6Only != nil {
			line += "  v6only=" + events.OnOff(*h.V6Only)
		}
		if showNetns {
			line += fmt.Sprintf("  netns %d", h.Netns)
		}
		fmt.Fprintln(w, line)
		if len(h.Processes) == 0 {
			fmt.Fprintln(w, "              no process has it open")
		}
		for _, p := range h.Processes {
			fmt.Fprintln(w, "              "+processText(&p, now))
		}
	}
	if rec.TimeWait != nil {
		fmt.Fprintf(w, "  TIME_WAIT   %d socket%s, the last expires in %.1fs (no process: the kernel keeps them 60 s after a close)\n",
			rec.TimeWait.Count, events.Plural(rec.TimeWait.Count), float64(rec.TimeWait.MaxRemainingMS)/1000)
	}
	if hidden := rec.Sockets - len(rec.Holders) - (rec.timeWaitCount() - listedTW); hidden > 0 {
		fmt.Fprintf(w, "  … and %d more connection%s (--format json lists the first few)\n", hidden, events.Plural(hidden))
	}
}

func (rec *whoRecord) timeWaitCount() int {
	if rec.TimeWait == nil {
		return 0
	}
	return rec.TimeWait.Count
}

// processText is one owning process: "pid 42 nginx (user root, up 3h12m): nginx -g daemon off;".
func processText(p *events.Process, now time.Time) string {
	var details []string
	if p.User != "" {
		details = append(details, "user "+p.User)
	} else {
		details = append(details, fmt.Sprintf("uid %d", p.UID))
	}
	if p.PPID != 0 {
		details = append(details, fmt.Sprintf("ppid %d", p.PPID))
	}
	if !p.StartTime.IsZero() {
		details = append(details, "up "+now.Sub(p.StartTime).Round(time.Second).String())
	}
	if p.ContainerID != "" {
		details = append(details, "container "+p.ContainerID[:min(12, len(p.ContainerID))])
	} else if p.Cgroup != "" && p.Cgroup != "/" {
		details = append(details, "cgroup "+p.Cgroup)
	}
	s := fmt.Sprintf("pid %d %s (%s)", p.PID, p.Comm, strings.Join(details, ", "))
	if cmd := strings.Join(p.Cmdline, " "); cmd != "" {
		if len(cmd) > 100 {
			cmd = cmd[:97] + "..."
		}
		s += ": " + cmd
	}
	return s
}
