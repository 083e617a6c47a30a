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
	p := events.Process{PID: 42, Comm: "nginx", Exe: "/usr/sbin/nginx", Unit: "nginx.service",
		Cmdline: []string{"nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"}} // Debian's unit
	got := reloadAdvice(&p, &events.Holder{Addr: "0.0.0.0", Port: 80}, true)
	for _, want := range []string{"nginx -s reload", "systemctl reload nginx.service", "systemctl stop nginx.service"} {
		if !strings.Contains(got, want) {
			t.Errorf("reloadAdvice = %q: want %q", got, want)
		}
	}
	if strings.Contains(got, "SIGTERM") {
		t.Errorf("reloadAdvice = %q: a unit's main process is not to be signalled", got)
	}
}

// Socket activation: a socket unit the service manager named is stopped
// by name; without it, the hint says how to find it, and the diagnosis
// why bindwatch could not name it. A container's or a user's manager is
// never taken at its word, even with a name on the record.
func TestSocketActivationNamesUnit(t *testing.T) {
	for _, c := range []struct {
		name            string
		proc            events.Process
		note            string
		want, not, diag []string
	}{
		{"named", events.Process{PID: 1, Comm: "systemd", SocketUnit: "nginx-test.socket"}, "",
			[]string{"systemctl stop nginx-test.socket", "systemctl disable nginx-test.socket"}, []string{"NAME.socket", "list-sockets"}, []string{"for nginx-test.socket"}},
		{"hostile name", events.Process{PID: 1, Comm: "systemd", SocketUnit: "a;b\x1b.socket"}, "",
			[]string{`systemctl stop 'a;b\x1b.socket'`}, []string{"\x1b"}, nil},
		{"not named", events.Process{PID: 1, Comm: "systemd"}, "ask the service manager which socket unit it is: /usr/bin/systemctl list-sockets: exit status 1: Failed to connect to bus",
			[]string{"systemctl list-sockets | grep 8080", "systemctl stop NAME.socket"}, nil, []string{"(bindwatch could not name the unit: ask the service manager", "Failed to connect to bus.)"}},
		{"container's manager", events.Process{PID: 4321, NSPID: 1, Comm: "systemd", SocketUnit: "evil.socket"}, "",
			[]string{"nsenter --target 4321 --all systemctl stop NAME.socket"}, []string{"evil"}, nil},
		{"user's manager", events.Process{PID: 4000, UID: 1000, User: "alice", Comm: "systemd", Cmdline: []string{"/lib/systemd/systemd", "--user"}, SocketUnit: "evil.socket"}, "",
			[]string{"systemctl --user -M alice@ stop NAME.socket"}, []string{"evil"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &events.Failure{Errno: "EADDRINUSE", Syscall: "bind", Proto: "tcp", Family: "inet", Addr: "127.0.0.1", Port: 8080,
				Process: events.Process{PID: 7, Comm: "nginx"},
				Holders: []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "127.0.0.1", Port: 8080, Processes: []events.Process{c.proc}}}}
			v := Diagnose(f, Facts{SocketUnitNote: c.note}, time.Now())
			if v.Cause != events.CauseSocketActivation {
				t.Errorf("cause %s, want %s", v.Cause, events.CauseSocketActivation)
			}
			for _, w := range c.want {
				if !strings.Contains(v.Hint, w) {
					t.Errorf("hint %q: want %q", v.Hint, w)
				}
			}
			for _, n := range c.not {
				if strings.Contains(v.Hint, n) || strings.Contains(v.Diagnosis, n) {
					t.Errorf("verdict %q / %q: want no %q", v.Diagnosis, v.Hint, n)
				}
			}
			for _, d := range c.diag {
				if !strings.Contains(v.Diagnosis, d) {
					t.Errorf("diagnosis %q: want %q", v.Diagnosis, d)
				}
			}
		})
	}
}

// nginx's own `nginx -s reload` signals the master of the default
// configuration (its pid file): for one started with -c, -p or a -g that
// sets the pid file, the hint says its unit, or SIGHUP to its master, and
// never repeats the options (a title any process may write, which root
// would run).
func TestReloadAdviceNginxOwnConfiguration(t *testing.T) {
	for _, c := range []struct {
		name      string
		cmdline   []string
		unit      string
		want, not []string
	}{
		{"default, daemonized", []string{"nginx: master process /usr/sbin/nginx"}, "",
			[]string{"(`nginx -s reload`)", "`nginx -s quit`"}, []string{"SIGHUP"}},
		{"default, in the foreground", []string{"/usr/sbin/nginx", "-g", "daemon off;"}, "",
			[]string{"(`nginx -s reload`)"}, []string{"SIGHUP"}},
		{"its own -c", []string{"nginx: master process nginx -c /srv/site/nginx.conf"}, "",
			[]string{"SIGHUP to its master, pid 42; not `nginx -s reload`", "SIGQUIT to pid 42"}, []string{"(`nginx -s reload`", "/srv/site", "nginx -s quit"}},
		{"-c joined to its value", []string{"nginx: master process nginx -c/srv/site/nginx.conf"}, "",
			[]string{"SIGHUP to its master, pid 42"}, []string{"/srv/site"}},
		{"its own prefix", []string{"nginx: master process /usr/sbin/nginx -p /srv/site/"}, "",
			[]string{"SIGHUP to its master, pid 42"}, []string{"/srv/site"}},
		{"a pid file of its own", []string{"nginx: master process nginx -g pid /run/site.pid;"}, "",
			[]string{"SIGHUP to its master, pid 42"}, []string{"/run/site.pid"}},
		{"a hostile title", []string{"nginx: master process nginx -c /tmp/x.conf -g load_module /tmp/evil.so;"}, "",
			[]string{"SIGHUP to its master, pid 42"}, []string{"/tmp/x.conf", "evil"}},
		{"unreadable", nil, "",
			[]string{"SIGHUP to its master, pid 42"}, nil},
		{"its own -c, in a unit", []string{"nginx: master process /usr/sbin/nginx -c /etc/nginx/site.conf"}, "site.service",
			[]string{"systemctl reload site.service", "systemctl stop site.service"}, []string{"nginx -s", "SIGHUP", "SIGTERM"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := events.Process{PID: 42, Comm: "nginx", Exe: "/usr/sbin/nginx", Unit: c.unit, Cmdline: c.cmdline}
			got := reloadAdvice(&p, &events.Holder{Addr: "0.0.0.0", Port: 80}, true)
			adviceSays(t, got, c.want, c.not)
		})
	}
}

// redis' own stop names the port it holds (and the address, unless the
// one redis-cli tries first), in the holder's network namespace when it
// is not bindwatch's, also as Debian installs it: redis-server is a link
// to redis-check-rdb, which /proc/PID/exe names.
func TestReloadAdviceRedisShutdown(t *testing.T) {
	for _, c := range []struct {
		name, exe, comm, addr string
		own                   bool
		want                  string
	}{
		{"Debian", "/usr/bin/redis-check-rdb", "redis-server", "127.0.0.1", true, "`redis-cli -p 16390 shutdown`"},
		{"built from source", "/usr/local/bin/redis-server", "redis-server", "0.0.0.0", true, "`redis-cli -p 16390 shutdown`"},
		{"on one address", "/usr/bin/redis-check-rdb", "redis-server", "10.1.2.3", true, "`redis-cli -h 10.1.2.3 -p 16390 shutdown`"},
		{"IPv6", "/usr/bin/redis-check-rdb", "redis-server", "::1", true, "`redis-cli -h ::1 -p 16390 shutdown`"},
		{"in another network namespace", "/usr/bin/redis-check-rdb", "redis-server", "127.0.0.1", false, "`nsenter --net=/proc/42/ns/net redis-cli -p 16390 shutdown`"},
		{"the checker itself is no server", "/usr/bin/redis-check-rdb", "redis-check-rdb", "127.0.0.1", true, "SIGTERM to pid 42"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := events.Process{PID: 42, Comm: c.comm, Exe: c.exe, Cmdline: []string{"redis-server " + c.addr + ":16390"}}
			got := reloadAdvice(&p, &events.Holder{Addr: c.addr, Port: 16390}, c.own)
			if !strings.Contains(got, c.want) || strings.Contains(got, "PORT") {
				t.Errorf("reloadAdvice = %q: want %q", got, c.want)
			}
		})
	}
}

// apachectl, like nginx -s, signals the apache of the default
// configuration: one started with its own -f, -d, -C or -c is reloaded by
// a signal to its parent process, its options never repeated.
func TestReloadAdviceApacheOwnConfiguration(t *testing.T) {
	for _, c := range []struct {
		name      string
		cmdline   []string
		unit      string
		want, not []string
	}{
		{"default", []string{"/usr/sbin/apache2", "-k", "start"}, "",
			[]string{"(`apachectl graceful`)", "`apachectl graceful-stop`"}, []string{"SIGUSR1"}},
		{"its own -f", []string{"/usr/sbin/apache2", "-f", "/srv/site/httpd.conf", "-k", "start"}, "",
			[]string{"SIGUSR1 to its parent process, pid 42", "SIGWINCH to pid 42"}, []string{"(`apachectl", "/srv/site"}},
		{"a directive of its own", []string{"/usr/sbin/httpd", "-C", "PidFile /run/site.pid"}, "",
			[]string{"SIGUSR1 to its parent process, pid 42"}, []string{"/run/site.pid"}},
		{"its own -f, in a unit", []string{"/usr/sbin/apache2", "-f", "/srv/site/httpd.conf"}, "site.service",
			[]string{"systemctl reload site.service"}, []string{"apachectl", "SIGUSR1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := events.Process{PID: 42, Comm: "apache2", Exe: "/usr/sbin/apache2", Unit: c.unit, Cmdline: c.cmdline}
			got := reloadAdvice(&p, &events.Holder{Addr: "0.0.0.0", Port: 80}, true)
			adviceSays(t, got, c.want, c.not)
		})
	}
}

// adviceSays checks that reloadAdvice's text has each of want and none of not.
func adviceSays(t *testing.T, got string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("reloadAdvice = %q: want %q", got, w)
		}
	}
	for _, n := range not {
		if strings.Contains(got, n) {
			t.Errorf("reloadAdvice = %q: must not say %q", got, n)
		}
	}
}
