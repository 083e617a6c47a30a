package deploy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
	"github.com/bindwatch/bindwatch/internal/watch"
)

// recorder keeps a session's records.
type recorder struct {
	mu   sync.Mutex
	recs []events.Record
}

func (r *recorder) Write(rec events.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

// startRecording starts a tracer on port, recording its records; stop
// ends it and returns them.
func startRecording(t *testing.T, port int) (stop func() []events.Record) {
	t.Helper()
	testenv.RequireRoot(t)
	rec := &recorder{}
	s, err := watch.Start(watch.Options{
		Tracer: tracer.Config{Backend: testenv.Backend(), Ports: []tracer.PortRange{{Lo: uint16(port), Hi: uint16(port)}}},
		Out:    rec, Tick: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() []events.Record {
		time.Sleep(200 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.recs
	}
}

// failuresIn counts the bind_failure records and returns the stop record.
func failuresIn(recs []events.Record) (failures int, stop *events.Stop) {
	for _, r := range recs {
		switch r := r.(type) {
		case *events.Failure:
			failures++
		case *events.Stop:
			stop = r
		}
	}
	return failures, stop
}

// wait-free's and free's test binds, run as root, are marked (SO_MARK) and
// not reported by a running tracer as failures of bindwatch; an ordinary
// failing bind on the same port is, and only it is counted.
func TestProbeBindsNotReported(t *testing.T) {
	port := testenv.FreePort(t)
	stop := startRecording(t, port)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	for range 3 {
		ref, err := Bindable(nil, Port{uint16(port), "tcp"}, BindOptions{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
		if err != nil || ref == nil || ref.Errno != syscall.EADDRINUSE {
			t.Fatalf("test bind on a held port: %v, %v; want EADDRINUSE", ref, err)
		}
	}
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE) // the control
	if failures, st := failuresIn(stop()); failures != 1 || st == nil || st.Failures != 1 {
		t.Errorf("%d bind_failure records, stop %+v: want the control's failure only, not the 3 marked test binds", failures, st)
	}
}

// The mark hides nothing for an unprivileged user: uid 65534 in a user
// and network namespace of its own may set SO_MARK there, and its failing
// bind with bindwatch's mark is still reported.
func TestProbeMarkIgnoredInUserNamespaces(t *testing.T) {
	port := testenv.FreePort(t)
	stop := startRecording(t, port)
	cmd := testenv.HelperAsUser(t, fmt.Sprintf("markedfail %d %d", port, tracer.ProbeMark), 65534)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		// Root of its namespace (uid 65534 outside), as unshare -Ur makes it.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "errno 98" {
		t.Fatalf("marked bind in a user namespace: %q, %v; want errno 98 (EADDRINUSE)", out, err)
	}
	if failures, st := failuresIn(stop()); failures != 1 || st == nil || st.Failures != 1 {
		t.Errorf("%d bind_failure records, stop %+v: want the marked failure reported", failures, st)
	}
}
