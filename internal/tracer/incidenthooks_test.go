package tracer

import (
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestIncidentHooksOnlyDuringIncidents: the incident tracepoint programs
// run only while the kernel watches a port. Signals sent with no incident
// open do not run incident_signal (the kernel's own run count says so),
// signals while one is open do, and once the last port is unwatched (and
// the linger is over) they stop again.
func TestIncidentHooksOnlyDuringIncidents(t *testing.T) {
	testenv.RequireRoot(t)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run counts: %v", err)
	}
	defer stats.Close()
	tr, err := Open(Config{Backend: testenv.Backend(), Ports: []PortRange{{Lo: 1, Hi: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.HooksLinger = 200 * time.Millisecond
	target := exec.Command("sleep", "60")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { target.Process.Kill(); target.Wait() }()

	prog := tr.coll.Programs["incident_signal"]
	runs := func() uint64 {
		t.Helper()
		s, err := prog.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return s.RunCount
	}
	signals := func() uint64 { // SIGCONT to a running process: no effect but the signal
		t.Helper()
		before := runs()
		for range 100 {
			if err := unix.Kill(target.Process.Pid, unix.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
		return runs() - before
	}

	if n := signals(); n != 0 || tr.IncidentHooksAttached() {
		t.Errorf("no incident open: incident_signal ran %d times for 100 signals (attached: %v), want 0", n, tr.IncidentHooksAttached())
	}
	ns, err := host.NetnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	key := PortKey{Netns: ns, Proto: "tcp", Port: 1}
	if ok, err := tr.WatchPort(key, 0, nil); !ok || err != nil {
		t.Fatalf("WatchPort: %v %v", ok, err)
	}
	if n := signals(); n < 100 || !tr.IncidentHooksAttached() {
		t.Errorf("an incident open: incident_signal ran %d times for 100 signals (attached: %v), want 100", n, tr.IncidentHooksAttached())
	}
	if err := tr.UnwatchPort(key, nil); err != nil {
		t.Fatal(err)
	}
	if n := signals(); n < 100 || !tr.IncidentHooksAttached() {
		t.Errorf("incident closed, lingering: incident_signal ran %d times for 100 signals (attached: %v), want 100", n, tr.IncidentHooksAttached())
	}
	// Reopened and closed within the linger: the first timer must not
	// detach what the second incident uses.
	if ok, err := tr.WatchPort(key, 0, nil); !ok || err != nil {
		t.Fatalf("WatchPort: %v %v", ok, err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := signals(); n < 100 || !tr.IncidentHooksAttached() {
		t.Errorf("reopened: incident_signal ran %d times for 100 signals (attached: %v), want 100", n, tr.IncidentHooksAttached())
	}
	if err := tr.UnwatchPort(key, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testenv.StartTimeout)
	for tr.IncidentHooksAttached() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := signals(); n != 0 || tr.IncidentHooksAttached() {
		t.Errorf("incident closed: incident_signal ran %d times for 100 signals (attached: %v), want 0", n, tr.IncidentHooksAttached())
	}
}
