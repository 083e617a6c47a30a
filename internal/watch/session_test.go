package watch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	os.Exit(m.Run())
}

// lines collects a session's JSON lines, safe to read while written.
type lines struct {
	testenv.SyncBuffer
}

// records returns every record written so far, as generic JSON objects.
func (l *lines) records(t testing.TB) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("output line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// session is a live bindwatch pipeline writing JSON into memory.
type session struct {
	t       testing.TB
	out     *lines
	s       *Session
	cancel  context.CancelFunc
	stopped bool
	done    chan error
}

// startSession attaches bindwatch with cfg (backend from the environment)
// and returns once tracing is live.
func startSession(t testing.TB, cfg tracer.Config) *session {
	t.Helper()
	return startSessionTick(t, cfg, 100*time.Millisecond)
}

// startSessionTick is startSession harvesting the fold table and writing
// lost records every tick.
func startSessionTick(t testing.TB, cfg tracer.Config, tick time.Duration) *session {
	t.Helper()
	s := attachSessionTick(t, cfg, tick)
	s.run()
	return s
}

// attachSession attaches bindwatch without reading the ring buffer yet:
// failures wait in the kernel until run.
func attachSession(t testing.TB, cfg tracer.Config) *session {
	t.Helper()
	return attachSessionTick(t, cfg, 100*time.Millisecond)
}

func attachSessionTick(t testing.TB, cfg tracer.Config, tick time.Duration) *session {
	t.Helper()
	return attachSessionOpts(t, Options{Tracer: cfg, Tick: tick})
}

// startSessionQuiet is startSession with an incident quiet gap of quiet.
func startSessionQuiet(t testing.TB, cfg tracer.Config, quiet time.Duration) *session {
	t.Helper()
	s := attachSessionOpts(t, Options{Tracer: cfg, Tick: 100 * time.Millisecond, IncidentQuiet: quiet})
	s.run()
	return s
}

// attachSessionOpts attaches bindwatch with opts, writing JSON into memory.
func attachSessionOpts(t testing.TB, opts Options) *session {
	t.Helper()
	testenv.RequireRoot(t)
	opts.Tracer.Backend = testenv.Backend()
	out := &lines{}
	w, _ := events.NewWriter(out, events.FormatJSON)
	opts.Out = w
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("start bindwatch: %v", err)
	}
	ss := &session{t: t, out: out, s: s, done: make(chan error, 1)}
	t.Cleanup(func() {
		if ss.cancel == nil { // never run
			s.close()
		}
		ss.stop()
	})
	return ss
}

// run starts reading, resolving and writing.
func (s *session) run() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- s.s.Run(ctx) }()
}

// stop ends the session and returns every record it wrote.
func (s *session) stop() []map[string]any {
	s.t.Helper()
	if s.cancel != nil && !s.stopped {
		s.cancel()
		s.stopped = true
		if err := <-s.done; err != nil {
			s.t.Errorf("bindwatch run: %v", err)
		}
	}
	return s.out.records(s.t)
}

// failures returns the bind_failure records written so far, decoded.
func (s *session) failures() []events.Failure {
	var out []events.Failure
	for _, r := range s.out.records(s.t) {
		if r["type"] != events.TypeFailure {
			continue
		}
		b, _ := json.Marshal(r)
		var f events.Failure
		if err := json.Unmarshal(b, &f); err != nil {
			s.t.Fatalf("decode bind_failure: %v", err)
		}
		out = append(out, f)
	}
	return out
}

// waitFailure waits until a failure on port is reported, and returns it.
func (s *session) waitFailure(port int) events.Failure {
	s.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		for _, f := range s.failures() {
			if int(f.Port) == port {
				return f
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatalf("no bind_failure on port %d within %v; output:\n%s", port, waitTimeout, s.out.String())
	return events.Failure{}
}

// waitTimeout bounds a wait for a record the session must write: only a
// session that never writes it reaches it, not a slow one on a loaded
// machine.
const waitTimeout = 2 * time.Minute

// onlyPort filters the kernel side to one port, so tests running at the
// same time on this machine do not see each other's failures.
func onlyPort(port int) tracer.Config {
	return tracer.Config{Ports: []tracer.PortRange{{Lo: uint16(port), Hi: uint16(port)}}}
}
