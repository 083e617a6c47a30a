package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "tell the story of each port outage from bindwatch's JSON logs",
		ArgsUsage: "[FILE...]",
		Description: `Reads the JSON lines bindwatch wrote (--format json --output FILE) — each
FILE with its rotated siblings FILE.1, FILE.2.gz… (oldest first), or
standard input when no FILE is given — and groups them into incidents: one
per port (network namespace, protocol, port) from its first failed bind() or
listen() until someone who wanted the port held it again, nobody tried
any more (abandoned: no failing process tried for the session's
--incident-quiet gap, 10s unless its start record says otherwise, or all
of them exited), or the trace ended; kept apart per host. For each it prints the window and the outage, the failing processes
with their attempts (folded ones included), each holder and what it was
(leftover child, orphan, another service, TIME_WAIT), a timeline relative
to the first failure — failures, signals sent to the holder and by whom,
when the port was released and how, when it recovered — and the diagnosis.

Logs merged from several hosts (records carry host): the report first
names the incidents seen on several hosts — the same protocol, port, cause,
failing program and holder program, e.g. a port clash rolled out with a
deployment — with the hosts and when it began on the first and last (with
--format json: one spread record each, after the incidents).

Malformed lines, records of a newer schema version and files cut off
mid-record are counted and reported on standard error, never fatal. Input
with no bindwatch record at all is refused in one sentence that says what
it is (bindwatch's text output, say: record with --format json or
--output FILE). With no FILE and a terminal on standard input, report
says so instead of waiting. With --html, the page is the output: standard
output stays quiet unless --format asks for the records there too.
A rotated sibling is read only when it is a regular file (no FIFO, device
or symlink) owned by the log's owner or root and not writable by every
user: in a shared directory anyone may plant one. Each one refused is
named on standard error; name it on the command line to read it anyway.
Records are read up to 1 MiB, the most the tracer writes.

Examples:
  bindwatch report /var/log/bindwatch.jsonl
  bindwatch report --port 8080 --since 2026-11-25T09:00:00Z bindwatch.jsonl
  bindwatch report --format json bindwatch.jsonl | jq .outage_ms
  bindwatch report --html outage.html bindwatch.jsonl
  journalctl -o cat -u bindwatch | bindwatch report

Exit status: 0 (also when there was no incident, or lines were skipped), 1
when a file is missing or cannot be read, holds no bindwatch record, or
--html cannot be written, 2 for a usage error.`,
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "port", Aliases: []string{"p"}, Usage: "only incidents on `PORT` or range LO-HI (repeatable)"},
			&cli.StringFlag{Name: "since", Usage: "only incidents still going on at or after `TIME` (RFC 3339, \"2006-01-02 15:04:05\" local, or a duration ago: 2h)"},
			&cli.StringFlag{Name: "until", Usage: "only incidents that began at or before `TIME` (as --since)"},
			&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text (one block per incident), json (one incident record per line; docs/schema.md) or ecs (the same as Elastic Common Schema documents). Default: text on a terminal, json otherwise"},
			&cli.StringFlag{Name: "html", Usage: "write one self-contained page with a timeline picture per incident to `FILE` (standard output then stays quiet, unless --format asks for the records there too)"},
		}, redactFlags()...),
		Action:          reportAction,
		HideHelpCommand: true,
	}
}

func reportAction(c *cli.Context) error {
	var ports []tracer.PortRange
	for _, p := range c.StringSlice("port") {
		r, err := parsePortRange(p)
		if err != nil {
			return usagef("--port %s: %v", p, err)
		}
		ports = append(ports, r)
	}
	now := time.Now()
	since, err := parseWhen(c.String("since"), now)
	if err != nil {
		return usagef("--since: %v", err)
	}
	until, err := parseWhen(c.String("until"), now)
	if err != nil {
		return usagef("--until: %v", err)
	}
	env, err := newCommandEnv(c, setup{redact: true})
	if err != nil {
		return err
	}
	format, rules := env.format, env.redact
	files := c.Args().Slice()
	if len(files) == 0 && isTerminal(os.Stdin) {
		// Waiting silently for a log typed in would look hung.
		return usagef("no FILE, and standard input is a terminal: report reads JSON lines from standard input; give a file or pipe a log (bindwatch report /var/log/bindwatch.jsonl; journalctl -o cat -u bindwatch | bindwatch report)")
	}
	for _, f := range files {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) && len(incident.Rotated(f)) == 0 {
			return cli.Exit(fmt.Sprintf("report: %s: no such file, nor rotated parts of it (hint: give the file bindwatch writes with --output, e.g. /var/log/bindwatch/bindwatch.jsonl)", f), 1)
		}
	}
	builder := incident.NewBuilder()
	log := incident.ReadFiles(files, os.Stdin, func(rec events.Record) {
		// A log written with --no-redact (or by an older bindwatch) may
		// hold secrets: the report does not repeat them.
		rules.Record(rec)
		builder.Add(rec)
	})
	wanted := func(port uint16) bool { return len(ports) == 0 || tracer.InPortRanges(ports, port) }
	incidents := incident.Select(builder.Finish(log.Last), wanted, since, until)
	sources := "standard input"
	if len(files) > 0 {
		sources = strings.Join(log.Files, ", ")
	}
	for _, r := range log.Skipped.Refused {
		fmt.Fprintf(os.Stderr, "bindwatch report: not reading %s (hint: a rotated file beside a log is read only when it is a regular file of the log's owner or root, not writable by every user; name it on the command line to read it anyway)\n", events.Escape(r))
	}
	if what := log.NoRecord(); what != "" {
		return cli.Exit(fmt.Sprintf("report: %s: %s", sources, what), 1)
	}
	unreadable := log.Skipped.Unreadable
	skipped := log.Skipped
	skipped.Unreadable = nil // said once, at the end
	skipped.Refused = nil    // said above
	if skipped.Any() {
		fmt.Fprintf(os.Stderr, "bindwatch report: skipped %s\n", events.Escape(skipped.String()))
	}
	html := c.String("html")
	if html != "" {
		if err := writeHTML(html, incidents, sources, log.Skipped); err != nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	switch {
	case html != "" && c.String("format") == "":
		// The page is the output: standard output stays quiet unless
		// --format asks for the records there too.
	case format != events.FormatText:
		write, err := recordWriter(os.Stdout, format)
		if err != nil {
			return err
		}
		for _, in := range incidents {
			if err := write(in); err != nil {
				return err
			}
		}
		for _, s := range incident.Spreads(incidents) {
			if err := write(s); err != nil {
				return err
			}
		}
	case len(incidents) == 0 && log.Read == 0 && len(unreadable) > 0:
		// Nothing was read: the error below says why.
	case len(incidents) == 0:
		fmt.Printf("no incident in %s (%d record%s read)\n", sources, log.Read, events.Plural(log.Read))
	default:
		if err := incident.WriteText(os.Stdout, incidents); err != nil {
			return err
		}
	}
	if len(unreadable) > 0 {
		return cli.Exit(fmt.Sprintf("report: could not read %s (hint: check the path and permissions)", strings.Join(unreadable, "; ")), 1)
	}
	return nil
}

// writeHTML writes the page to path, replacing a regular file of bindwatch's
// user (report often runs as root, and the page often goes to /tmp), but
// never through a symlink, into a FIFO (which would block), into a file
// with other hard links, or into a file another user owns: in a shared
// directory any of them may have been planted.
func writeHTML(path string, incidents []*events.Incident, sources string, skipped incident.Skipped) error {
	f, err := openPage(path)
	if err != nil {
		return err
	}
	if err := incident.WriteHTML(f, incidents, sources, skipped); err != nil {
		f.Close()
		return fmt.Errorf("write --html %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write --html %s: %w", path, err)
	}
	return nil
}

// openPage opens path for writeHTML, truncated once it is known to be a
// file bindwatch may replace.
func openPage(path string) (*os.File, error) {
	const hint = "hint: give a path in a directory only you can write, or remove what is there"
	if err := host.CheckDirLinks(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("write --html %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0o644)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("write --html %s: it is a symbolic link, and bindwatch does not follow symlinks for what it writes (%s)", path, hint)
	}
	if errors.Is(err, unix.ENXIO) { // O_NONBLOCK: a FIFO no one reads
		return nil, fmt.Errorf("write --html %s: refusing to replace it: it is not a regular file (a FIFO) (%s)", path, hint)
	}
	if err != nil {
		return nil, fmt.Errorf("write --html %s: %w (hint: check the directory exists and is writable)", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("write --html %s: %w", path, err)
	}
	why := ""
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		why = "it is not a regular file"
	case st.Nlink > 1:
		why = fmt.Sprintf("it has %d hard links: it may be linked to a file bindwatch must not write", st.Nlink)
	case int(st.Uid) != os.Geteuid():
		why = fmt.Sprintf("uid %d owns it", st.Uid)
	}
	if why != "" {
		f.Close()
		return nil, fmt.Errorf("write --html %s: refusing to replace it: %s (%s)", path, why, hint)
	}
	if err := unix.Ftruncate(fd, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write --html %s: %w", path, err)
	}
	return f, nil
}

// parseWhen reads --since/--until: RFC 3339, a local "2006-01-02
// 15:04:05", or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339 like 2026-11-25T09:00:00Z, \"2026-11-25 09:00:00\" local time, or a duration ago like 2h)", s)
}
