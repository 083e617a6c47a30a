package resolve

import (
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	code := m.Run()
	stopBenchFleet()
	os.Exit(code)
}

// startProgram runs a real server program, skipping the subtest when it is
// not installed (.ci/run installs python3, socat and nginx, so CI runs them).
func startProgram(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	testenv.Require(t, name, "a real server program")
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd
}

// waitHeld polls until proto/port has a socket in state in the resolver's
// own namespace, as a just-started server binds after a moment.
func waitHeld(t *testing.T, r *Resolver, proto string, port uint16, state string) *PortReport {
	t.Helper()
	deadline := time.Now().Add(testenv.StartTimeout)
	for {
		rep, err := r.Who(r.OwnNetns(), proto, port)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range rep.Holders {
			if h.State == state && len(h.Processes) > 0 {
				return rep
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d/%s never reached %s: %+v", port, proto, state, rep.Holders)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newTestResolver(t testing.TB, opts Options) *Resolver {
	t.Helper()
	testenv.RequireRoot(t)
	if opts.CacheTTL == 0 {
		opts.CacheTTL = -1 // tests change sockets between lookups
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if method, why := r.OwnerLookup(); !opts.NoBPF && method != OwnersBPFIter {
		if os.Getenv("BINDWATCH_REQUIRE_BPF") == "1" {
			t.Fatalf("BPF iterator unavailable: %v", why)
		}
		t.Logf("BPF iterator unavailable, using %s: %v", method, why)
	}
	return r
}
