package main

import (
	"flag"
	"io"
	"os"
	"slices"

	"github.com/urfave/cli/v2"
)

// newApp is bindwatch: tracing as its own action, with its flags, and
// the commands.
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

// commands are bindwatch's commands, in the order --help lists them.
func commands() []*cli.Command {
	return []*cli.Command{whoCommand(), runCommand(), waitFreeCommand(), freeCommand(), doctorCommand(), reportCommand(), completionCommand(), manCommand()}
}

// leanFor drops bindwatch's own (tracing) flags from app when args run
// `bindwatch who` with nothing before it: no tracing flag can be given
// then, yet the flag parser would build each one, and before running
// the command look up every one of them among all the others (urfave/cli
// v2's runFlagActions, quadratic: ~0.5 ms of a one-shot who's ~10). Usage
// errors still name them (globalFlags), and a value the environment sets
// for one (BINDWATCH_…) is still checked: one that cannot be parsed is
// the same usage error as before.
func leanFor(app *cli.App, args []string) error {
	if len(args) < 2 || args[1] != "who" {
		return nil
	}
	set := flag.NewFlagSet("bindwatch", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range app.Flags {
		if e, ok := f.(interface{ GetEnvVars() []string }); ok && slices.ContainsFunc(e.GetEnvVars(), inEnv) {
			if err := f.Apply(set); err != nil {
				return flagError(app, "", err)
			}
		}
	}
	if app.Metadata == nil {
		app.Metadata = map[string]any{}
	}
	// The help and version flags, which the app adds as it starts,
	// are among them.
	flags := slices.Clone(app.Flags)
	for _, f := range []cli.Flag{cli.HelpFlag, cli.VersionFlag} {
		if f != nil {
			flags = append(flags, f)
		}
	}
	app.Metadata[globalFlagsKey] = flags
	app.Flags = nil
	return nil
}

func inEnv(name string) bool {
	_, ok := os.LookupEnv(name)
	return ok
}

const globalFlagsKey = "bindwatch.flags"

// globalFlags are bindwatch's own flags, also when leanFor dropped them.
func globalFlags(app *cli.App) []cli.Flag {
	if f, ok := app.Metadata[globalFlagsKey].([]cli.Flag); ok {
		return f
	}
	return app.Flags
}
