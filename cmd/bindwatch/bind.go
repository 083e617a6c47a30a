package main

import (
	"net/netip"
	"strings"

	"github.com/bindwatch/bindwatch/internal/deploy"
	"github.com/urfave/cli/v2"
)

// bindFlags say how the caller's program will bind (wait-free and free).
func bindFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "reuseaddr", Usage: "check with SO_REUSEADDR set, as your program does before bind()"},
		&cli.StringSliceFlag{Name: "addr", Usage: "check on `ADDR` only, the address your program binds (repeatable; default 0.0.0.0 and ::)"},
	}
}

// bindOptions reads --addr and --reuseaddr.
func bindOptions(c *cli.Context) (deploy.BindOptions, error) {
	opts := deploy.BindOptions{ReuseAddr: c.Bool("reuseaddr")}
	for _, s := range c.StringSlice("addr") {
		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if err != nil || a.Zone() != "" {
			return opts, usagef("--addr %q: not an IP address (e.g. 0.0.0.0, ::, 127.0.0.1, ::1)", s)
		}
		if a.Is4In6() {
			a = a.Unmap()
		}
		opts.Addrs = append(opts.Addrs, a)
	}
	return opts, nil
}
