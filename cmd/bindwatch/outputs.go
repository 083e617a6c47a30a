package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/sink"
	"github.com/urfave/cli/v2"
)

// defaultMaxFiles is how many rotated files --output-max-size keeps.
const defaultMaxFiles = 5

// outputFlags are the trace flags that say where records go besides
// --format and --output.
func outputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output-max-size", Usage: "rotate the --output file before it passes `SIZE` (bytes, or with K, M, G: 100M): FILE becomes FILE.1, FILE.1 FILE.2, … (for hosts without logrotate; with logrotate, send SIGHUP in postrotate instead)"},
		&cli.IntFlag{Name: "output-max-files", Value: defaultMaxFiles, Usage: "with --output-max-size: keep `N` rotated files, removing older ones"},
		&cli.BoolFlag{Name: "output-compress", Usage: "with --output-max-size: gzip each rotated file (FILE.1.gz, …) in the background"},
		&cli.StringFlag{Name: "syslog", Usage: "also send each record to a syslog collector at `URL`: unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT (RFC 5424, app-name bindwatch, msgid the record type, the JSON (or, with --format ecs, ECS) record as message; TCP octet-counted, reconnected; up to 10000 records, and 8 MiB, kept while the collector is away or not reading, then counted as lost)"},
		&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on `HOST:PORT` (/metrics; /healthz): bindwatch_bind_failures_total{syscall,errno,proto} (folded failures included), bindwatch_incidents_total{cause,state}, bindwatch_incident_unserved_seconds and _contention_seconds (histograms), bindwatch_events_lost_total, bindwatch_output_errors_total, … (no per-process labels)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "text format: write failures only (each failure's line, folded repeats, losses), without why/fix and without the start, stop and incident lines (JSON and ECS always carry every record)"},
		&cli.BoolFlag{Name: "no-hints", Usage: "text format: leave out the fix lines (why stays; JSON and ECS keep the hint field)"},
		&cli.BoolFlag{Name: "metrics-port-label", Usage: "with --metrics-addr and --port: label bind_failures_total with the --port argument each failure matched (one value per --port, so the series stay few)"},
	}
}

// openOutputs opens where a session's records go: --output, or the stream
// std (called stdName, "stdout" or "stderr"), and --syslog and
// --metrics-addr. The format is --format, or streamFormat on the stream if
// not empty, or else text for a terminal and JSON otherwise. It returns
// the set and the format chosen. Every usage error comes before a file is
// created.
func openOutputs(c *cli.Context, std *os.File, stdName, streamFormat string) (*sink.Set, string, error) {
	if c.String("format") != "" {
		if _, err := outputFormatFor(c, false); err != nil {
			return nil, "", err
		}
	}
	opts, err := fileOptions(c)
	if err != nil {
		return nil, "", err
	}
	if err := checkMetricsFlags(c); err != nil {
		return nil, "", err
	}
	set := sink.NewSet()
	if u := c.String("syslog"); u != "" {
		// Syslog carries a machine form: ECS with --format ecs, else JSON.
		form := sink.JSON
		if c.String("format") == events.FormatECS {
			form = sink.ECS
		}
		s, err := sink.DialSyslog(sink.SyslogOptions{URL: u, Form: sink.Fitted(form), Warn: os.Stderr})
		if err != nil {
			return nil, "", usageError{err: err}
		}
		set.Add(s)
	}
	var out *sink.File
	path := c.String("output")
	if f, name, ok := standardStream(path); ok {
		std, stdName = f, name
		path = ""
	}
	if path != "" {
		if out, err = sink.OpenFile(path, opts); err != nil {
			set.Close()
			return nil, "", err
		}
	} else {
		out = sink.NewStream(std, stdName, opts)
		// A reader that goes away must not kill the tracer: without this,
		// Go exits on EPIPE on standard output (the write error is counted
		// instead). signal.Notify, unlike Ignore, is undone for the
		// programs bindwatch run starts.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	}
	set.Add(out)
	format := c.String("format")
	if format == "" && path == "" && streamFormat != "" {
		format = streamFormat
	}
	if format == "" {
		if format, err = outputFormatFor(c, out.Terminal()); err != nil {
			set.Close()
			return nil, "", err
		}
	}
	form, err := sink.FormNamed(format)
	if err != nil {
		set.Close()
		return nil, "", err
	}
	if format == events.FormatText {
		form = sink.LiveText(events.LiveOptions{Quiet: c.Bool("quiet"), NoHints: c.Bool("no-hints")})
	} else {
		// No record larger than bindwatch report reads.
		form = sink.Fitted(form)
	}
	out.SetForm(form)
	if err := addMetrics(c, set); err != nil {
		set.Close()
		return nil, "", err
	}
	return set, format, nil
}

// standardStream is the standard stream an --output value names, if it
// names one: "-" and /dev/stdout are standard output, /dev/stderr standard
// error (called "stdout" and "stderr" in output_lost records). They are
// bindwatch's own descriptors, not paths: nothing is resolved or opened,
// so the rule that refuses a symlink for a file (/dev/stdout is one, to
// /proc/self/fd/1) does not refuse what containers and systemd units
// commonly pass. Every other path is a file.
func standardStream(path string) (*os.File, string, bool) {
	switch path {
	case "-", "/dev/stdout":
		return os.Stdout, "stdout", true
	case "/dev/stderr":
		return os.Stderr, "stderr", true
	}
	return nil, "", false
}

// fileOptions are --output-max-size and --output-max-files.
func fileOptions(c *cli.Context) (sink.FileOptions, error) {
	opts := sink.FileOptions{Warn: os.Stderr}
	if s := c.String("output-max-size"); s != "" {
		n, err := parseSize(s)
		if err != nil {
			return opts, usagef("--output-max-size %s: %v", s, err)
		}
		if path := c.String("output"); path == "" {
			return opts, usagef("--output-max-size needs --output (rotation is of a file)")
		} else if _, name, ok := standardStream(path); ok {
			return opts, usagef("--output-max-size needs --output FILE: --output %s is standard %s, which cannot be rotated", path, map[string]string{"stdout": "output", "stderr": "error"}[name])
		}
		opts.MaxSize = n
		opts.MaxFiles = c.Int("output-max-files")
		if opts.MaxFiles < 1 {
			return opts, usagef("--output-max-files %d: keep at least 1 rotated file", opts.MaxFiles)
		}
		opts.Compress = c.Bool("output-compress")
	} else if c.IsSet("output-max-files") || c.Bool("output-compress") {
		return opts, usagef("--output-max-files and --output-compress need --output-max-size (how large a file grows before it is rotated)")
	}
	return opts, nil
}

// checkMetricsFlags checks --metrics-addr and --metrics-port-label.
func checkMetricsFlags(c *cli.Context) error {
	addr := c.String("metrics-addr")
	if addr == "" {
		if c.Bool("metrics-port-label") {
			return usagef("--metrics-port-label needs --metrics-addr")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("--metrics-addr %s: %v (write HOST:PORT, e.g. 127.0.0.1:9851)", addr, err)
	}
	if c.Bool("metrics-port-label") && len(c.StringSlice("port")) == 0 {
		return usagef("--metrics-port-label needs --port: only the ports given there become label values")
	}
	return nil
}

// addMetrics adds the Prometheus output (--metrics-addr) to set, once the
// other outputs are in it (their counts are served).
func addMetrics(c *cli.Context, set *sink.Set) error {
	addr := c.String("metrics-addr")
	if addr == "" {
		return nil
	}
	opts := sink.MetricsOptions{Addr: addr, Version: version, Outputs: set.Stats}
	if c.Bool("metrics-port-label") {
		for _, p := range c.StringSlice("port") {
			r, err := parsePortRange(p)
			if err != nil {
				return usagef("--port %s: %v", p, err)
			}
			opts.PortLabels = append(opts.PortLabels, sink.PortLabel{Lo: r.Lo, Hi: r.Hi})
		}
	}
	m, err := sink.ListenMetrics(opts)
	if err != nil {
		return err
	}
	set.Add(m)
	return nil
}

// reopenOnHangup makes SIGHUP reopen the outputs (logrotate's postrotate
// `kill -HUP`) for the rest of the process's life: a SIGHUP while the
// stop record is being written must not kill it either.
func reopenOnHangup(set *sink.Set) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			set.Reopen()
		}
	}()
}

// parseSize parses a size in bytes, with an optional K, M or G (powers of
// 1024; KB, KiB and friends too).
func parseSize(s string) (int64, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(num)
	for _, suffix := range []string{"IB", "B"} {
		if strings.HasSuffix(upper, suffix) && len(upper) > len(suffix) {
			upper = upper[:len(upper)-len(suffix)]
			break
		}
	}
	if n := len(upper); n > 0 {
		switch upper[n-1] {
		case 'K':
			mult, upper = 1<<10, upper[:n-1]
		case 'M':
			mult, upper = 1<<20, upper[:n-1]
		case 'G':
			mult, upper = 1<<30, upper[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(upper), 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with K, M or G: 100M)", s)
	}
	if n*mult < 4096 {
		return 0, fmt.Errorf("%q is too small to hold a record or two (at least 4K)", s)
	}
	return n * mult, nil
}
