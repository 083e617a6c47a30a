package main

import (
	"io"
	"os"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/sink"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// outputFormat is --format, or by default text when dest is a terminal
// (people read it) and JSON otherwise (scripts and files read it): the one
// rule every bindwatch command follows.
func outputFormat(c *cli.Context, dest *os.File) (string, error) {
	return outputFormatFor(c, isTerminal(dest))
}

// outputFormatFor is outputFormat for a destination that is a terminal
// or not.
func outputFormatFor(c *cli.Context, terminal bool) (string, error) {
	switch format := c.String("format"); format {
	case "":
		if terminal {
			return events.FormatText, nil
		}
		return events.FormatJSON, nil
	case events.FormatText, events.FormatJSON, events.FormatECS:
		return format, nil
	default:
		return "", usagef("--format %q: use text, json or ecs", format)
	}
}

// recordWriter writes whole records in format (json or ecs, as
// sink.FormNamed encodes them), one line and one Write each: the
// one-shot commands' (who, free, wait-free, report) way to write what the
// tracer writes through its sink.
func recordWriter(w io.Writer, format string) (func(rec events.Record) error, error) {
	form, err := sink.FormNamed(format)
	if err != nil {
		return nil, usagef("--format %s: %v", format, err)
	}
	return func(rec events.Record) error {
		b, err := form(rec)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// formatFlag is --format of wait-free and free.
func formatFlag() cli.Flag {
	return &cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text (for people), json (one object per line per port on standard output; fields in docs/schema.md) or ecs (the same as Elastic Common Schema documents). Default: text on a terminal, json otherwise"}
}
