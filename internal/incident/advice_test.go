package incident

import (
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The kill commands of a hint go once the timeline shows their pids gone;
// one that names a pid still there stays; the rest of the hint is kept.
func TestWithoutKills(t *testing.T) {
	gone := map[int]bool{7: true, 8: true}
	for _, c := range []struct{ hint, want string }{
		{"Use another port, or stop the holder (its service, or kill 7).", "Use another port, or stop the holder (its service)."},
		{"Use another port, or stop the holder (its service, or kill 7 9).", "Use another port, or stop the holder (its service, or kill 7 9)."},
		{"Stop it: kill 7 8 (kill -9 only if it ignores SIGTERM). To prevent it, have the service manager stop the whole cgroup.", "To prevent it, have the service manager stop the whole cgroup."},
		{"If it should not run, stop it: kill 7 (kill -9 only if it ignores SIGTERM). To prevent orphans, run it under a service manager.", "To prevent orphans, run it under a service manager."},
		{"Ask the user to end the forward, or end that session (kill 7); sshd's AllowTcpForwarding decides.", "Ask the user to end the forward, or end that session; sshd's AllowTcpForwarding decides."},
		{"restart the Docker daemon (systemctl restart docker) or kill 8.", "restart the Docker daemon (systemctl restart docker)."},
		{"Stop it: podman stop web (pid 7 runs in it).", "Stop it: podman stop web (pid 7 runs in it)."},
	} {
		if got := withoutKills(c.hint, gone); got != c.want {
			t.Errorf("withoutKills(%q)\n got %q\nwant %q", c.hint, got, c.want)
		}
	}
}

// A recovered incident's fix is advice for next time; an open one whose
// holder was never seen to let go keeps its fix.
func TestAdvice(t *testing.T) {
	in := &events.Incident{State: events.IncidentOpen, Hint: "Use another port, or stop the holder (its service, or kill 7).",
		Holders: []events.IncidentHolder{{Processes: []events.Process{{PID: 7}}}}}
	if label, text := Advice(in); label != "fix" || text != in.Hint {
		t.Errorf("open, held: %s: %s", label, text)
	}
	in.Released = []*events.Released{{Holder: &events.Process{PID: 7}}}
	if label, text := Advice(in); label != "next time" || text != "Use another port, or stop the holder (its service)." {
		t.Errorf("open, released: %s: %s", label, text)
	}
	in.Released, in.State = nil, events.IncidentRecovered
	if label, text := Advice(in); label != "next time" || text != "Use another port, or stop the holder (its service)." {
		t.Errorf("recovered: %s: %s", label, text)
	}
}
