package watch

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"golang.org/x/sys/unix"
)

// parityBackends are the backends to compare: BINDWATCH_PARITY_BACKENDS,
// or else every backend that works here. Where only one works (this host:
// tracepoint) it is compared with itself in a second session, so the test
// still checks that nothing but the per-run fields differs between runs.
func parityBackends(t *testing.T) []string {
	if env := os.Getenv("BINDWATCH_PARITY_BACKENDS"); env != "" {
		return strings.Split(env, ",")
	}
	var names []string
	for _, st := range tracer.Probe() {
		if st.Err == nil {
			names = append(names, st.Name)
		}
	}
	if len(names) == 1 {
		names = append(names, names[0])
	}
	return names
}

// paritySubject is a failure as JSON, without what legitimately differs
// between two runs or two backends: the time, the backend and hook, the
// provoking thread, the port (each run has its own), and the holders,
// whose inodes are new each run (holder resolution is tested on its own),
// with the cause drawn from them: whether the test's own socket is still
// open when the resolver looks (self_conflict) or already closed
// (restart_race) is a matter of timing, not of the backend.
func paritySubject(f events.Failure) string {
	f.Time = time.Time{}
	f.Backend, f.Hook = "", ""
	f.Process.TID = 0
	f.Port = 0
	f.Holders, f.TimeWait, f.Diagnosis, f.Hint, f.Cause = nil, nil, "", "", ""
	b, _ := json.Marshal(f)
	return string(b)
}

// The same real failures, seen through every backend, give the same events.
func TestBackendParity(t *testing.T) {
	testenv.RequireRoot(t)
	backends := parityBackends(t)
	t.Logf("comparing backends %v", backends)
	scenarios := []struct {
		name    string
		provoke func(t *testing.T, port int)
	}{
		{"tcp4 in use", func(t *testing.T, port int) {
			testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
			testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{ReuseAddr: true}, syscall.EADDRINUSE)
		}},
		{"udp6 in use", func(t *testing.T, port int) {
			testenv.Hold(t, "udp", "::1", port, testenv.Opts{})
			testenv.FailBind(t, "udp", "::1", port, testenv.Opts{V6Only: &on}, syscall.EADDRINUSE)
		}},
		{"dual-stack", func(t *testing.T, port int) {
			testenv.Hold(t, "tcp", "0.0.0.0", port, testenv.Opts{})
			testenv.FailBind(t, "tcp", "::", port, testenv.Opts{V6Only: &off}, syscall.EADDRINUSE)
		}},
		{"not on host", func(t *testing.T, port int) {
			testenv.FailBind(t, "udp", "203.0.113.1", port, testenv.Opts{}, syscall.EADDRNOTAVAIL)
		}},
		{"listen", func(t *testing.T, port int) {
			x, _ := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{ReuseAddr: true})
			y, _ := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{ReuseAddr: true})
			defer unix.Close(x)
			defer unix.Close(y)
			testenv.Bind(x, "127.0.0.1", port)
			testenv.Bind(y, "127.0.0.1", port)
			unix.Listen(x, 1)
			if err := unix.Listen(y, 1); err != syscall.EADDRINUSE {
				t.Fatalf("listen = %v, want EADDRINUSE", err)
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var first, firstBackend string
			for _, b := range backends {
				t.Setenv("BINDWATCH_TEST_BACKEND", b)
				port := testenv.FreePort(t)
				s := startSession(t, onlyPort(port))
				sc.provoke(t, port)
				f := s.waitFailure(port)
				s.stop()
				if f.Backend != b {
					t.Fatalf("asked for backend %s, got %s", b, f.Backend)
				}
				got := paritySubject(f)
				if first == "" {
					first, firstBackend = got, b
					continue
				}
				if got != first {
					t.Errorf("backend %s and %s disagree:\n%s: %s\n%s: %s", firstBackend, b, firstBackend, first, b, got)
				}
			}
		})
	}
}
