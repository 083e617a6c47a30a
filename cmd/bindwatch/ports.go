package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bindwatch/bindwatch/internal/deploy"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"github.com/urfave/cli/v2"
)

// whoQuery is one PORT[/PROTO] argument, expanded to one protocol.
type whoQuery struct {
	port  uint16
	proto string
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

// portArgs reads the PORT[/tcp|/udp] arguments (as `bindwatch who` does).
func portArgs(c *cli.Context) ([]deploy.Port, error) {
	if !c.Args().Present() {
		return nil, usagef("%s needs at least one PORT, e.g. `bindwatch %s 8080/tcp`", c.Command.Name, c.Command.Name)
	}
	var ports []deploy.Port
	for _, arg := range c.Args().Slice() {
		qs, err := parsePortArg(arg)
		if err != nil {
			return nil, usagef("%v", err)
		}
		for _, q := range qs {
			ports = append(ports, deploy.Port{Num: q.port, Proto: q.proto})
		}
	}
	return ports, nil
}

// portList is ports as a message lists them: "8080/tcp, 8080/udp".
func portList(ports []deploy.Port) string {
	var s []string
	for _, p := range ports {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// parsePortRange parses "8080" or "8000-8100".
func parsePortRange(s string) (tracer.PortRange, error) {
	if strings.HasPrefix(s, "-") {
		return tracer.PortRange{}, errors.New("a port is never negative (want 0-65535, or a range LO-HI such as 8000-8100)")
	}
	lo, hi, isRange := strings.Cut(s, "-")
	if isRange && strings.TrimSpace(hi) == "" {
		return tracer.PortRange{}, errors.New("the range has no high port (want LO-HI, such as 8000-8100)")
	}
	a, err := parsePort(lo)
	if err != nil {
		return tracer.PortRange{}, err
	}
	if !isRange {
		return tracer.PortRange{Lo: a, Hi: a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return tracer.PortRange{}, err
	}
	if a > b {
		return tracer.PortRange{}, fmt.Errorf("range %d-%d is empty (write the low port first)", a, b)
	}
	return tracer.PortRange{Lo: a, Hi: b}, nil
}

// parsePort parses one port number, 0 to 65535.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (0-65535)", s)
	}
	return uint16(n), nil
}
