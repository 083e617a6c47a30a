package main

import (
	"os"

	"github.com/bindwatch/bindwatch/internal/events"
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
	case events.FormatText, events.FormatJSON:
		return format, nil
	default:
		return "", usagef("--format %q: use text or json", format)
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
