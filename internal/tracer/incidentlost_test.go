package tracer

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestIncidentRingLossCounted: signals to a watched port's holder that
// find the kernel's incident ring buffer full (nobody reads it) are
// counted, not dropped in silence: every signal sent is either read back
// as a signal record or in Stats().IncidentLost.
func TestIncidentRingLossCounted(t *testing.T) {
	testenv.RequireRoot(t)
	tr, err := Open(Config{Backend: testenv.Backend(), Ports: []PortRange{{Lo: 1, Hi: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// The holder ignores SIGHUP (a stop signal the kernel reports): sh
	// sets it ignored, and exec keeps it so.
	target := exec.Command("sh", "-c", `trap "" HUP; exec sleep 60`)
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { target.Process.Kill(); target.Wait() }()
	ignoresHUP := func() bool {
		ignored, _ := host.SignalDisposition(target.Process.Pid, int(unix.SIGHUP))
		return ignored
	}
	for deadline := time.Now().Add(time.Minute); !ignoresHUP(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the holder does not ignore SIGHUP after a minute")
		}
	}
	ns, err := host.NetnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	key := PortKey{Netns: ns, Proto: "tcp", Port: 1}
	if ok, err := tr.WatchPort(key, 0, []int{target.Process.Pid}); !ok || err != nil {
		t.Fatalf("WatchPort: %v %v", ok, err)
	}
	// Far more than the incident ring holds (~360 records), unread.
	const sent = 3000
	for range sent {
		if err := unix.Kill(target.Process.Pid, unix.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	read := 0
	for {
		rec, err := tr.ReadIncident()
		if err != nil {
			t.Fatal(err)
		}
		if rec == nil {
			break
		}
		if s, ok := rec.(*events.Signal); ok && s.Target.PID == target.Process.Pid && s.Signal == "SIGHUP" {
			read++
		}
	}
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.IncidentLost == 0 || uint64(read)+st.IncidentLost != sent {
		t.Errorf("%d signals sent: %d read back, %d counted lost; want every one in one or the other, some lost", sent, read, st.IncidentLost)
	}
}
