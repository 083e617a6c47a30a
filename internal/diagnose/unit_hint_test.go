package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// A holder in a systemd service: the hint stops the unit with systemctl
// (systemd would restart a killed main process); a user's unit through
// that user's manager; a login session's scope is no service and keeps
// kill PID, never systemctl stop session-N.scope.
func TestHintStopsHolderUnit(t *testing.T) {
	for _, c := range []struct {
		name      string
		proc      events.Process
		want, not string
	}{
		{"system service", events.Process{PID: 42, Comm: "redis-server", Unit: "redis.service"}, "systemctl stop redis.service (pid 42 runs in it", "kill 42"},
		{"user service", events.Process{PID: 42, Comm: "app", Unit: "app.service", UnitManager: "user@1000.service"}, "systemctl --user -M 1000@ stop app.service", "kill 42"},
		{"hostile unit", events.Process{PID: 42, Comm: "app", Unit: "a;b\x1b.service", UnitManager: "user@1000.service"}, `stop 'a;b\x1b.service'`, "\x1b"},
		{"session scope", events.Process{PID: 42, Comm: "app", Unit: "session-3.scope"}, "kill 42", "systemctl"},
		{"user manager", events.Process{PID: 42, Comm: "systemd", Unit: "user@1000.service"}, "kill 42", "systemctl"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &events.Failure{Errno: "EADDRINUSE", Syscall: "bind", Proto: "tcp", Family: "inet", Addr: "0.0.0.0", Port: 8080,
				Process: events.Process{PID: 7, Comm: "other"},
				Holders: []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080, Processes: []events.Process{c.proc}}}}
			v := Diagnose(f, Facts{}, time.Now())
			if !strings.Contains(v.Hint, c.want) || strings.Contains(v.Hint, c.not) {
				t.Errorf("hint %q: want %q, not %q", v.Hint, c.want, c.not)
			}
		})
	}
}

// A second copy of a service's program: reload or stop it through its
// unit, never SIGTERM to its main process.
func TestReloadAdviceUsesUnit(t *testing.T) {
	p := events.Process{PID: 42, Comm: "nginx", Exe: "/usr/sbin/nginx", Unit: "nginx.service"}
	got := reloadAdvice(&p)
	for _, want := range []string{"nginx -s reload", "systemctl reload nginx.service", "systemctl stop nginx.service"} {
		if !strings.Contains(got, want) {
			t.Errorf("reloadAdvice = %q: want %q", got, want)
		}
	}
	if strings.Contains(got, "SIGTERM") {
		t.Errorf("reloadAdvice = %q: a unit's main process is not to be signalled", got)
	}
}
