package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/enrich"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/redact"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/sink"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// commandEnv is what an action works with once its flags are read: the
// output format, the redaction rules, the network namespace to look in,
// the resolver, or for tracing the tracer's configuration and outputs.
// Every action builds it with newCommandEnv, which reads the flags in one
// order for every command, so each rule (how --redact and --no-redact
// combine, how --netns is found and entered, what is said without root)
// is applied in one place.
type commandEnv struct {
	// format is --format, or text on a terminal and JSON otherwise: for
	// standard output, or for a tracing session its --output.
	format string
	// redact are the rules of --redact and --no-redact (with setup.redact
	// or setup.resolver).
	redact *redact.Rules
	// netns is the namespace --netns names, the zero Netns for
	// bindwatch's own (with setup.netns).
	netns host.Netns
	// resolver describes holders (with setup.resolver).
	resolver *resolve.Resolver
	// tracer is the trace flags' configuration, unit --unit as records
	// name units, and out where records go (with setup.trace).
	tracer tracer.Config
	unit   string
	out    *sink.Set
}

// setup says which parts of commandEnv an action needs. The format is
// always read.
type setup struct {
	// trace: the action traces (bindwatch itself, run).
	trace *traceSetup
	// netns: --netns (or --all-netns) names where to look (who, free,
	// wait-free).
	netns bool
	// ownPids refuses to go on when /proc is not the host's pid
	// namespace: a pid the kernel gave is then another process here, or
	// none (free signals by pid).
	ownPids bool
	// redact reads --redact and --no-redact.
	redact bool
	// resolver, if not nil, are the options of the resolver to open,
	// with the redaction rules (read even without redact) and container
	// and pod names.
	resolver *resolve.Options
	// unprivileged, if not nil, says what the action cannot see or do
	// with the capabilities bindwatch has ("" when it has them all),
	// said once the resolver is open.
	unprivileged func() string
}

// traceSetup is how a tracing action is set up.
type traceSetup struct {
	// unit reads --unit.
	unit bool
	// stream, called streamName, is where records go without --output,
	// in streamFormat if not empty (openOutputs).
	stream                   *os.File
	streamName, streamFormat string
}

// newCommandEnv reads c's flags as s says, in this order: the tracer's
// configuration and --unit, the format, --netns, the pid namespace,
// redaction, the resolver, the outputs, root. On an error what it opened
// is closed again.
func newCommandEnv(c *cli.Context, s setup) (env *commandEnv, err error) {
	env = &commandEnv{}
	defer func() {
		if err != nil {
			env.Close()
			env = nil
		}
	}()
	if s.trace != nil {
		if env.tracer, err = tracerConfig(c); err != nil {
			return env, err
		}
		if s.trace.unit {
			if env.unit, err = unitArg(c.String("unit")); err != nil {
				return env, err
			}
		}
	} else if env.format, err = outputFormat(c, os.Stdout); err != nil {
		return env, err
	}
	if s.netns {
		if env.netns, err = netnsOption(c); err != nil {
			return env, err
		}
	}
	if s.ownPids {
		if err := host.ProcPidNamespace(); err != nil {
			return env, fmt.Errorf("%s: refusing to look for holders to stop: %w", c.Command.Name, err)
		}
	}
	if s.redact || s.resolver != nil {
		if env.redact, err = redactRules(c); err != nil {
			return env, err
		}
	}
	if s.resolver != nil {
		if env.resolver, err = commandResolver(*s.resolver, env.redact); err != nil {
			return env, err
		}
	}
	if s.unprivileged != nil {
		if msg := s.unprivileged(); msg != "" {
			fmt.Fprintf(os.Stderr, "bindwatch: %s (run with sudo)\n", msg)
		}
	}
	if s.trace != nil {
		if env.out, env.format, err = openOutputs(c, s.trace.stream, s.trace.streamName, s.trace.streamFormat); err != nil {
			return env, err
		}
		if err := requireRoot(); err != nil {
			return env, err
		}
	}
	return env, nil
}

// Close closes the resolver and the outputs.
func (env *commandEnv) Close() {
	if env.resolver != nil {
		env.resolver.Close()
	}
	if env.out != nil {
		env.out.Close()
	}
}

// commandResolver is the resolver of who, free and wait-free: opts, with
// rules for every process it describes, container and pod names from
// enrich, and a running tracer's iterators when it shares them.
func commandResolver(opts resolve.Options, rules *redact.Rules) (*resolve.Resolver, error) {
	opts.Redact = rules
	opts.SharedIterators = true
	opts.Names = enrich.New(enrich.Options{}).Process
	opts.SocketUnit = enrich.NewSocketUnits().Holder
	warnPidNamespace()
	return resolve.New(opts)
}

// notRootError is requireRoot's: tracing cannot start without privileges
// (exit status 1).
type notRootError struct{ err error }

func (e notRootError) Error() string { return e.err.Error() }
func (notRootError) ExitCode() int   { return 1 }

// requireRoot explains in one sentence why tracing cannot start without
// privileges, instead of letting the first bpf() call fail obscurely.
func requireRoot() error {
	if err := tracer.CheckPrivileges(); err != nil {
		return notRootError{err}
	}
	warnPidNamespace()
	return nil
}

// warnPidNamespace says on stderr, once, when /proc is not the host's
// pid namespace's (the start record says it too, as limits.pid_namespace).
func warnPidNamespace() {
	if err := host.ProcPidNamespace(); err != nil {
		fmt.Fprintf(os.Stderr, "bindwatch: warning: %v\n", err)
	}
}
