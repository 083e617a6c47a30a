package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/deploy"
	"github.com/bindwatch/bindwatch/internal/events"
)

// Exit codes of `bindwatch run` besides the command's own status.
const (
	// exitConflict: the command succeeded, but a bind()/listen() in its
	// process tree failed (--fail-on-conflict).
	exitConflict = 3
	// exitRunFailed: bindwatch could not trace, so the command was not run
	// (the convention of env, timeout and docker run).
	exitRunFailed = 125
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a command and catch every failed bind()/listen() in its process tree",
		ArgsUsage: "-- CMD [ARGS...]",
		Description: `Attaches tracing first, then runs CMD with bindwatch's standard input,
output and error, and traces CMD's whole process tree — every process it
forks from then on, daemons that double-fork included (the kernel adds
them at fork, so none is missed). Each failed bind() or listen() is
reported on standard error as it happens, with who holds the address and
why; at the end a summary says how many failed and on which ports.
SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed on to CMD. Tracing stops
when CMD exits, even if daemons it started keep running.

Put CMD after --, so that its own flags are not taken for bindwatch's.

Exit status: CMD's exit status (128+N when signal N killed it); with
--fail-on-conflict 3 when CMD succeeded but a bind()/listen() failed; 2
on a usage error; 125 when tracing could not start (CMD was not run); 126
when CMD is not executable, 127 when it is not found.

Examples:
  sudo bindwatch run -- go test ./...           # a flaky suite: which test's port clashed?
  sudo bindwatch run --fail-on-conflict -- ./integration-tests.sh
  sudo bindwatch run --port 8080 --errno EADDRINUSE -- docker compose up
  sudo bindwatch run --format json --output binds.jsonl -- make e2e
  sudo bindwatch run -- sh -c 'nginx; ./app --port 8080'`,
		Flags:           withEnv(runFlags()),
		Action:          runAction,
		HideHelpCommand: true,
	}
}

// runFlags are the trace flags, less --pid, --follow-children and --unit
// (run traces CMD's tree, whatever unit it is in), plus --fail-on-conflict.
func runFlags() []cli.Flag {
	var flags []cli.Flag
	for _, f := range traceFlags() {
		switch f.Names()[0] {
		case "pid", "follow-children", "unit":
			continue
		case "format":
			flags = append(flags, &cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text (readable lines), json (one object per line, start and stop records included) or ecs (the same records as Elastic Common Schema documents). Default: text on standard error, json in an --output file"})
			continue
		case "output":
			flags = append(flags, &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "append records to `FILE` (created 0640; never through a symlink) instead of standard error; the summary stays on standard error. -, /dev/stdout and /dev/stderr are the standard streams themselves"})
			continue
		}
		flags = append(flags, f)
	}
	return append(flags, &cli.BoolFlag{Name: "fail-on-conflict", Usage: fmt.Sprintf("exit %d if a bind()/listen() failed although CMD succeeded (narrow with --errno EADDRINUSE)", exitConflict)})
}

func runAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usagef("run needs a command: bindwatch run [flags] -- CMD [ARGS...]")
	}
	// Records go to standard error by default (text: they are read there
	// among CMD's own messages), JSON in an --output file.
	env, err := newCommandEnv(c, setup{redact: true, trace: &traceSetup{stream: os.Stderr, streamName: "stderr", streamFormat: events.FormatText}})
	var notRoot notRootError
	if errors.As(err, &notRoot) {
		return cli.Exit(fmt.Sprintf("%v; %s was not run", err, argv[0]), exitRunFailed)
	}
	if err != nil {
		return err
	}
	defer env.Close()
	cfg, rules, out := env.tracer, env.redact, env.out
	text := env.format == events.FormatText
	res, err := deploy.Run(deploy.RunOptions{
		Argv: argv, Tracer: cfg, Out: out, Text: text, Summary: os.Stderr, ReadyFile: c.String("ready-file"),
		Redact: rules, IncidentQuiet: c.Duration("incident-quiet"),
		// who, free and wait-free started by CMD open this copy.
		ShareIterators: true,
	})
	var startErr *deploy.StartError
	switch {
	case errors.As(err, &startErr):
		return cli.Exit(startErr.Error(), startErr.Code)
	case err != nil:
		return cli.Exit(fmt.Sprintf("%v; %s was not run", err, argv[0]), exitRunFailed)
	}
	if c.Bool("fail-on-conflict") && res.ExitCode == 0 {
		if res.Failures > 0 {
			return cli.Exit(fmt.Sprintf("--fail-on-conflict: %s succeeded, but %d bind()/listen() call%s failed in its process tree (hint: the failures above say who held each port)", argv[0], res.Failures, events.Plural(res.Failures)), exitConflict)
		}
		if res.TraceErr != nil {
			return cli.Exit("--fail-on-conflict: tracing stopped early, so bindwatch cannot vouch that no bind()/listen() failed (hint: see the tracing error above)", exitRunFailed)
		}
	}
	if res.ExitCode != 0 {
		return cli.Exit("", res.ExitCode)
	}
	return nil
}
