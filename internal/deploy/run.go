package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/redact"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"github.com/bindwatch/bindwatch/internal/watch"
)

// RunOptions configure Run.
type RunOptions struct {
	// Argv is the command to run; Argv[0] is looked up in $PATH.
	Argv []string
	// Tracer holds the filters (ports, errnos, fold, backend…); Run
	// traces its own pid with FollowChildren, so that exactly the
	// command's process tree is traced from the moment it forks.
	Tracer tracer.Config
	// Out receives the records. With Text set only failures, repeats and
	// lost records are written (the summary says the rest); in JSON every
	// record is, start and stop included.
	Out  watch.Sink
	Text bool
	// Summary receives the summary at the end, and warnings.
	Summary io.Writer
	// ReadyFile, if set, is created once tracing is live, before the
	// command starts.
	ReadyFile string
	// Redact removes secrets from every process reported; nil is the
	// default rules.
	Redact *redact.Rules
	// IncidentQuiet is the quiet gap that abandons an incident nobody
	// tries any more (0: incident.DefaultQuiet).
	IncidentQuiet time.Duration
	// ShareIterators pins a copy of the socket-owner iterators while the
	// command runs, unless a tracer shares one already, so that who, free
	// and wait-free started by the command (a deploy script's wait-free)
	// open it instead of loading their own (watch.Options.ShareIterators).
	// Why it could not is a warning after the summary.
	ShareIterators bool
}

// RunResult is how the command ended and what was caught.
type RunResult struct {
	// ExitCode is the command's exit status, 128+N when signal N killed it.
	ExitCode int
	// Failures counts every failed bind()/listen() of the process tree
	// that the kernel saw (after the filters), folded and lost ones too.
	Failures uint64
	// TraceErr is why tracing stopped before the command ended, if it did:
	// failures after that point were not caught.
	TraceErr error
}

// StartError is a command that could not be started at all.
type StartError struct {
	Name string
	Err  error
	// Code is the shell's exit status for it: 127 not found, 126 found
	// but not executable.
	Code int
}

func (e *StartError) Error() string {
	hint := "check the command line after --"
	if e.Code == 126 {
		hint = "check that it is an executable file (chmod +x) and not a directory"
	}
	return fmt.Sprintf("run %s: %v (hint: %s)", e.Name, e.Err, hint)
}

func (e *StartError) Unwrap() error { return e.Err }

// Run attaches tracing to bindwatch's own pid with FollowChildren, then
// starts the command with bindwatch's standard input, output and error,
// so that every process of its tree — daemons that double-fork included,
// found by the kernel at fork — is traced from its first instruction.
// Failures are written as they happen; SIGINT, SIGTERM, SIGHUP and SIGQUIT
// are forwarded to the command. When it exits, the ring buffer is drained
// and a summary written.
func Run(opts RunOptions) (*RunResult, error) {
	if len(opts.Argv) == 0 {
		return nil, errors.New("run: no command given (hint: bindwatch run [flags] -- CMD [ARGS...])")
	}
	cfg := opts.Tracer
	cfg.PIDs = []uint32{uint32(os.Getpid())}
	cfg.FollowChildren = true
	sink := &recordSink{out: opts.Out, text: opts.Text, ports: map[Port]*portTally{}, incidents: incident.NewBuilder()}
	// Catch the signals before anything a script can see (the start
	// record, the ready file) and before the command exists, so none kills
	// bindwatch instead of reaching the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	var notShared struct {
		sync.Mutex
		err error
	}
	session, err := watch.Start(watch.Options{Tracer: cfg, Out: sink, ReadyFile: opts.ReadyFile, Redact: opts.Redact,
		Job: commandText(opts.Argv), IncidentQuiet: opts.IncidentQuiet,
		ShareIterators: opts.ShareIterators, ShareFailed: func(err error) {
			notShared.Lock()
			notShared.err = err
			notShared.Unlock()
		}})
	if err != nil {
		return nil, fmt.Errorf("start tracing: %w", err)
	}
	ctx, stopTracing := context.WithCancel(context.Background())
	traced := make(chan error, 1)
	go func() { traced <- session.Run(ctx) }()

	started := time.Now()
	cmd := exec.Command(opts.Argv[0], opts.Argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		stopTracing()
		<-traced
		return nil, startError(opts.Argv[0], err)
	}
	exited := make(chan struct{})
	go forwardSignals(sigs, cmd.Process, exited)
	waitErr := cmd.Wait()
	close(exited)
	took := time.Since(started)

	// Whatever the tree's processes did before the command exited is in
	// the ring buffer already: Run drains it when its context ends.
	stopTracing()
	res := &RunResult{TraceErr: <-traced}
	res.ExitCode = exitCode(cmd.ProcessState, waitErr)
	res.Failures = sink.failures()
	sink.writeSummary(opts.Summary, opts.Argv, cmd.ProcessState, took)
	if res.TraceErr != nil {
		fmt.Fprintf(opts.Summary, "bindwatch: tracing stopped before %s ended: %v — failures after that were not caught (hint: check --output is writable)\n", opts.Argv[0], res.TraceErr)
	}
	notShared.Lock()
	if notShared.err != nil {
		fmt.Fprintf(opts.Summary, "bindwatch: %s\n", watch.NotSharing(notShared.err))
	}
	notShared.Unlock()
	return res, nil
}

func startError(name string, err error) error {
	code := 126
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = 127
	}
	return &StartError{Name: name, Err: err, Code: code}
}

// exitCode is the command's status as a shell reports it: its exit code,
// or 128+N when signal N killed it.
func exitCode(st *os.ProcessState, waitErr error) int {
	if st == nil {
		if waitErr != nil {
			return 1
		}
		return 0
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// forwardSignals passes the signals bindwatch receives on to the command
// until it has exited. A SIGINT or SIGQUIT typed on the terminal is not
// passed on: the terminal sent it to the whole foreground process group,
// the command included, and a second copy would interrupt its cleanup.
func forwardSignals(sigs <-chan os.Signal, p *os.Process, exited <-chan struct{}) {
	for {
		select {
		case <-exited:
			return
		case sig := <-sigs:
			if (sig == unix.SIGINT || sig == unix.SIGQUIT) && foregroundOnTerminal() {
				continue
			}
			p.Signal(sig)
		}
	}
}

// foregroundOnTerminal reports whether bindwatch is in the foreground
// process group of its controlling terminal: then keyboard signals reach
// the command (in the same group) without bindwatch.
func foregroundOnTerminal() bool {
	tty, err := os.Open("/dev/tty")
	if err != nil {
		return false // no controlling terminal
	}
	defer tty.Close()
	pgrp, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// recordSink receives the session's records, counts them for the summary,
// and writes them on in the user's format.
type recordSink struct {
	out  watch.Sink
	text bool

	backend string
	ports   map[Port]*portTally
	order   []Port
	lost    uint64
	stop    *events.Stop
	// incidents tells each port's story for the summary, as bindwatch
	// report would from the same records.
	incidents *incident.Builder
}

// portTally is what the summary says about one port.
type portTally struct {
	count   uint64
	errnos  []string
	failing []string // "python3 (pid 42)"
	holders []string
}

// Write tallies one record of the session and passes it on in the user's
// format; in text, start and stop are left to the summary.
func (s *recordSink) Write(rec events.Record) error {
	s.count(rec)
	switch rec.(type) {
	case *events.Start, *events.Stop:
		if s.text {
			return nil
		}
	}
	return s.out.Write(rec)
}

func (s *recordSink) count(rec events.Record) {
	s.incidents.Add(rec)
	switch r := rec.(type) {
	case *events.Start:
		s.backend = r.Backend
	case *events.Failure:
		t := s.tally(Port{r.Port, r.Proto})
		t.count++
		addOnce(&t.errnos, r.Errno)
		addOnce(&t.failing, events.ProcessShort(&r.Process))
		for _, h := range r.Holders {
			addOnce(&t.holders, events.HolderLine(&h, false))
		}
		if r.TimeWait != nil && len(r.Holders) == 0 {
			addOnce(&t.holders, "TIME_WAIT (no process)")
		}
	case *events.Repeats:
		t := s.tally(Port{r.Port, r.Proto})
		t.count += r.Count
		addOnce(&t.errnos, r.Errno)
	case *events.Lost:
		s.lost += r.Count
	case *events.Stop:
		s.stop = r
	}
}

func (s *recordSink) tally(p Port) *portTally {
	t := s.ports[p]
	if t == nil {
		t = &portTally{}
		s.ports[p] = t
		s.order = append(s.order, p)
	}
	return t
}

func addOnce(list *[]string, s string) {
	if s != "" && !slices.Contains(*list, s) {
		*list = append(*list, s)
	}
}

// failures is every failure the kernel counted this session.
func (s *recordSink) failures() uint64 {
	if s.stop != nil {
		return s.stop.Failures
	}
	var n uint64
	for _, t := range s.ports {
		n += t.count
	}
	return n + s.lost
}

// writeSummary says how many bind()/listen() calls failed in the process
// tree, on which ports, and against whom.
func (s *recordSink) writeSummary(w io.Writer, argv []string, st *os.ProcessState, took time.Duration) {
	what := fmt.Sprintf("the process tree of %s", commandText(argv))
	status := "exit status ?"
	if st != nil {
		status = exitText(st)
	}
	took = took.Round(100 * time.Millisecond)
	n := s.failures()
	if n == 0 {
		fmt.Fprintf(w, "bindwatch: no bind()/listen() failed in %s (%s, ran %s)\n", what, status, took)
		return
	}
	fmt.Fprintf(w, "bindwatch: %d bind()/listen() call%s failed in %s (%s, ran %s):\n", n, events.Plural(int(n)), what, status, took)
	for _, p := range s.order {
		t := s.ports[p]
		line := fmt.Sprintf("  %-9s %d× %s by %s", p, t.count, strings.Join(t.errnos, "/"), joinFirst(t.failing, 3))
		if len(t.holders) > 0 {
			line += "; held by " + joinFirst(t.holders, 3)
		}
		fmt.Fprintln(w, line)
	}
	if s.lost > 0 {
		fmt.Fprintf(w, "  %d more lost: the ring buffer and the fold table were full, their ports are unknown (hint: raise --ring-size, or narrow with --port)\n", s.lost)
	}
	if incidents := s.incidents.Finish(time.Now()); len(incidents) > 0 {
		fmt.Fprintln(w)
		incident.WriteText(w, incidents)
	}
}

func joinFirst(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(" and %d more", len(list)-n)
}

func commandText(argv []string) string {
	return "`" + events.EscapeCut(strings.Join(argv, " "), 60) + "`"
}

func exitText(st *os.ProcessState) string {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by %s", SignalName(ws.Signal()))
	}
	return fmt.Sprintf("exit status %d", st.ExitCode())
}
