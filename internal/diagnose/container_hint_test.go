package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// A holder in a container: the hint names the runtime's stop command for
// it (killing the pid would see it restarted), with hostile names escaped
// and quoted; outside a container it stays kill PID.
func TestHintStopsHolderContainer(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name      string
		proc      events.Process
		want, not string
	}{
		{"podman", events.Process{PID: 42, Comm: "nginx", Container: events.Container{Runtime: "podman", ID: id, Name: "web"}}, "podman stop web (pid 42 runs in it)", "kill 42"},
		{"docker", events.Process{PID: 42, Comm: "nginx", Container: events.Container{Runtime: "docker", ID: id, Name: "web-1"}}, "docker stop web-1", "kill 42"},
		{"docker without a name", events.Process{PID: 42, Comm: "nginx", Container: events.Container{Runtime: "docker", ID: id}}, "docker stop " + id, "kill 42"},
		{"cri-o", events.Process{PID: 42, Comm: "nginx", Container: events.Container{Runtime: "cri-o", ID: id, Name: "web"}}, "crictl stop " + id, "kill 42"},
		{"pod", events.Process{PID: 42, Comm: "nginx", Container: events.Container{Runtime: "containerd", ID: id, Name: "web"}, Pod: events.Pod{Namespace: "shop", Name: "web-7d4b9-x2x"}},
			"kubectl -n shop delete pod web-7d4b9-x2x (pid 42 runs in it; a Deployment or other controller that owns the pod starts a new one", "kill 42"},
		{"hostile name", events.Process{PID: 42, Comm: "nginx", Container: events.Container{Runtime: "podman", ID: id, Name: "x; rm -rf / #\x1b[2J'"}}, `podman stop 'x; rm -rf / #\x1b[2J'\'''`, "\x1b"},
		{"no container", events.Process{PID: 42, Comm: "nginx"}, "kill 42", "stop the holder's container"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &events.Failure{Errno: "EADDRINUSE", Syscall: "bind", Proto: "tcp", Family: "inet", Addr: "0.0.0.0", Port: 8080,
				Process: events.Process{PID: 7, Comm: "app"},
				Holders: []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080, Processes: []events.Process{c.proc}}}}
			v := Diagnose(f, Facts{}, time.Now())
			if !strings.Contains(v.Hint, c.want) || strings.Contains(v.Hint, c.not) {
				t.Errorf("hint %q: want %q, not %q", v.Hint, c.want, c.not)
			}
		})
	}
}
