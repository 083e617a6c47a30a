// Command bindwatch catches every failed bind()/listen() on a Linux host
// and names both sides: the process that failed and the one that holds the
// address. See `bindwatch --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	app := newApp()
	args, err := permute(app, os.Args)
	if err == nil {
		err = app.Run(args)
	}
	os.Exit(exitCode(err))
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "bindwatch",
		Usage:   "catch failed bind()/listen() calls and name who holds the address",
		Version: version,
		Description: `With no command, bindwatch traces every failed bind() and listen() on this
host (EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL), and every connect() or
sendto() that found no local port left (EADDRNOTAVAIL, UDP's EAGAIN: the
ephemeral range used up, with who holds it), until Ctrl-C, printing one
line per failure: the process that failed, what it asked for, and who holds
the address — captured in the kernel at the moment of failure. The first
failure of a program on a port says why and how to fix it; a retry loop's
next failures get one short line each (--quiet: failures only; --no-hints:
no fix lines).

Examples:
  sudo bindwatch                               # watch everything, readable lines
  sudo bindwatch --port 8080 --port 9000-9100  # only these ports
  sudo bindwatch --format json --output /var/log/bindwatch.jsonl
  sudo bindwatch --comm nginx --errno EADDRINUSE
  sudo bindwatch --pid 4242 --follow-children  # one service and its children

Every tracing flag can also be set from the environment, as systemd units
and containers configure daemons: BINDWATCH_ and the flag's name in capitals
([$BINDWATCH_OUTPUT] below; lists comma-separated: BINDWATCH_PORT=80,443).
A flag on the command line wins.

Containers are named from their runtime's state on disk, read-only. A
dockerd run with its own --data-root (not /var/lib/docker) is read there
with BINDWATCH_DOCKER_ROOT=DIR, a containerd run with its own --state (not
/run/containerd) with BINDWATCH_CONTAINERD_STATE=DIR, for every command (who,
free, wait-free and --netns NAME too).

Logs that run for months: SIGHUP reopens --output (logrotate's postrotate
kill -HUP; create and copytruncate both work), or --output-max-size rotates
it. A write that fails (full disk, reader gone) never stops tracing: what
could not be written is counted and said in the output (output_lost) once
writing works again.

Exit status: 0 after a clean stop (Ctrl-C, SIGTERM), 1 when tracing cannot
start (the message says why: privileges, BTF, kernel, backend), 2 for a
mistake in the command line.`,
		Flags:           withEnv(traceFlags()),
		Action:          traceAction,
		Commands:        commands(),
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // main decides exit codes
	}
	usageErrors(app)
	return app
}

// exitCode prints err, if any, and chooses the exit code: 2 for usage
// errors, the code an action asked for, 1 for any other failure.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(explainFlagValue(ue.err).Error()) // one line
		fmt.Fprintf(os.Stderr, "%s: %s\nsee `%s --help`\n", commandLine(ue.cmd), msg, commandLine(ue.cmd))
		return 2
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "bindwatch: "+msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "bindwatch: %v\n", err)
	return 1
}

// flagValueError is how Go's flag package words a value it cannot parse.
var flagValueError = regexp.MustCompile(`^invalid value "(.*)" for flag -([\w-]+): (.*)$`)

// flagValueWants says, for each flag whose value the flag package parses,
// what a good value looks like.
var flagValueWants = map[string]string{
	"fold":             "a duration such as 500ms, 1s or 2m; 0 reports every failure",
	"grace":            "a duration such as 500ms, 5s or 1m",
	"timeout":          "a duration such as 500ms, 30s or 5m",
	"ring-size":        "a number of bytes, a power of two such as 1048576 (1 MiB)",
	"output-max-files": "a whole number of files",
	"pid":              "a process id: a positive whole number",
}

// explainFlagValue rewrites the flag package's "invalid value ... parse
// error" into what is wrong with the value and what a good one looks like.
func explainFlagValue(err error) error {
	m := flagValueError.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, name, why := m[1], m[2], m[3]
	switch {
	case why == "parse error", strings.HasSuffix(why, "invalid syntax"):
		why = "not understood"
	case strings.HasSuffix(why, "value out of range"):
		why = "out of range"
	}
	if want, ok := flagValueWants[name]; ok {
		return fmt.Errorf("--%s %s: %s (want %s)", name, value, why, want)
	}
	return fmt.Errorf("--%s %s: %s", name, value, why)
}
