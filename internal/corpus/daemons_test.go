package corpus

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// A classic daemon (redis-server --daemonize yes, memcached -d) forks
// before it binds: the parent exits 0 at once and the child, reparented to
// init, serves. Started twice, the second child fails against the first:
// a second copy of a running daemon, which no hint may kill.
func TestRedis(t *testing.T) {
	t.Parallel()
	t.Run("daemonize_twice", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "redis-server")
		port := testenv.FreePort(t)
		pidFile := filepath.Join(s.dir, "redis.pid")
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--daemonize", "yes",
			"--pidfile", pidFile, "--logfile", filepath.Join(s.dir, "redis.log"), "--dir", s.dir,
			"--save", "", "--appendonly", "no"}
		tr := startTrace(t, port)
		s.runOK(s.command("redis-server", args...))
		running := readPID(t, pidFile)
		waitListening(t, port, 1)

		s.runOK(s.command("redis-server", args...)) // the parent exits 0; its child fails
		f := tr.waitFor(t, 15*time.Second, "bind_failure of the second redis-server", func(r record) bool {
			return r.str("type") == "bind_failure" && r.pid("process", "pid") != running
		})
		second := f.pid("process", "pid")
		waitGone(t, second)
		if !alive(running) {
			t.Fatalf("the running redis-server (pid %d) exited", running)
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, second, "the second redis-server") {
			alreadyRunning(t, f, running)
			// Debian's redis-server is a link to redis-check-rdb, which
			// /proc/PID/exe names: still told, with the port it holds.
			hintHas(t, f, fmt.Sprintf("`redis-cli -p %d shutdown`", port))
		}
		tr.gaveUp(t, port, "already_running", running)
	})
}

func TestMemcached(t *testing.T) {
	t.Parallel()
	t.Run("daemon_twice", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "memcached")
		port := testenv.FreePort(t)
		// Its pid file in a directory of its user, as Debian's
		// /run/memcached: memcached writes it after dropping root.
		run := filepath.Join(s.dir, "run")
		if err := os.Mkdir(run, 0o755); err != nil {
			t.Fatal(err)
		}
		chownTo(t, run, "memcache")
		pidFile := filepath.Join(run, "memcached.pid")
		args := []string{"-d", "-p", strconv.Itoa(port), "-l", "127.0.0.1", "-U", "0", "-u", "memcache",
			"-P", pidFile, "-c", "64", "-m", "8"}
		tr := startTrace(t, port)
		s.runOK(s.command("memcached", args...))
		running := readPID(t, pidFile)
		waitListening(t, port, 1)

		s.runOK(s.command("memcached", args...))
		f := tr.waitFor(t, 15*time.Second, "bind_failure of the second memcached", func(r record) bool {
			return r.str("type") == "bind_failure" && r.pid("process", "pid") != running
		})
		second := f.pid("process", "pid")
		waitGone(t, second)
		if !alive(running) {
			t.Fatalf("the running memcached (pid %d) exited", running)
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, second, "the second memcached") {
			alreadyRunning(t, f, running)
		}
		tr.gaveUp(t, port, "already_running", running)
	})
}

// chownTo gives path to the system user name (from /etc/passwd).
func chownTo(t *testing.T, path, name string) {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			uid, _ := strconv.Atoi(f[2])
			gid, _ := strconv.Atoi(f[3])
			if err := os.Chown(path, uid, gid); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no user %s in /etc/passwd (the %s package makes it)", name, name)
}

// haproxy is an haproxy instance of a scene, run as its documentation's
// reload section does: -D, a pid file, and a stats socket that hands the
// listeners over (expose-fd listeners) for -x.
type haproxy struct {
	s   *scene
	dir string
}

func (s *scene) newHAProxy(name string, port int) *haproxy {
	s.t.Helper()
	h := &haproxy{s: s, dir: filepath.Join(s.dir, name)}
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	conf := fmt.Sprintf(`global
	stats socket %[1]s/stats.sock mode 600 level admin expose-fd listeners
	nbthread 1
defaults
	mode http
	timeout connect 1s
	timeout client 5s
	timeout server 5s
	timeout http-request 5s
frontend web
	bind 127.0.0.1:%[2]d
	http-request return status 200 content-type text/plain string ok
`, h.dir, port)
	if err := os.WriteFile(h.conf(), []byte(conf), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return h
}

func (h *haproxy) conf() string    { return filepath.Join(h.dir, "haproxy.cfg") }
func (h *haproxy) pidFile() string { return filepath.Join(h.dir, "haproxy.pid") }

// start runs `haproxy -f CONF -p PIDFILE -D ARGS...` and returns the pid
// of the haproxy it started (not any of old).
func (h *haproxy) start(t *testing.T, args []string, old ...int) int {
	t.Helper()
	h.s.runOK(h.s.command("haproxy", append([]string{"-f", h.conf(), "-p", h.pidFile(), "-D"}, args...)...))
	return readPID(t, h.pidFile(), old...)
}

// pendingRequest opens a connection to port and sends a request's first
// line and headers but not the blank line that ends it: a request in
// flight, which a soft-stopping haproxy finishes before it exits.
func pendingRequest(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: corpus\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// finishRequest ends the request and checks its answer.
func finishRequest(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "Connection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("the request in flight got %q, %v", status, err)
	}
	c.Close()
}

func TestHAProxy(t *testing.T) {
	t.Parallel()

	// haproxy's reload: the new process binds beside the old one
	// (SO_REUSEPORT, haproxy's default) — or takes its listeners over the
	// stats socket (-x) — and tells it to finish (-sf). The old one ends
	// the request it has in flight, then exits. Nothing fails.
	for _, tc := range []struct {
		name     string
		transfer bool
	}{{"reload_sf", false}, {"reload_sf_x", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScene(t, "haproxy")
			port := testenv.FreePort(t)
			tr := startTrace(t, port)
			h := s.newHAProxy("haproxy", port)
			old := h.start(t, nil)
			waitListening(t, port, 1)
			httpOK(t, port)
			inFlight := pendingRequest(t, port)
			before := listenInodes(port)

			args := []string{"-sf", strconv.Itoa(old)}
			if tc.transfer {
				args = append([]string{"-x", filepath.Join(h.dir, "stats.sock")}, args...)
			}
			h.start(t, args, old)
			httpOK(t, port)
			if !alive(old) {
				t.Fatalf("the old haproxy (pid %d) exited with a request in flight", old)
			}
			finishRequest(t, inFlight)
			waitGone(t, old)
			httpOK(t, port)
			// -x hands the old listener over; without it the new process
			// binds its own beside the old one.
			if after := listenInodes(port); tc.transfer != slices.Equal(after, before) {
				t.Errorf("listening sockets on port %d: %v before the reload, %v after (socket transfer: %v)", port, before, after, tc.transfer)
			}
			recs := tr.stop(t)
			if fs := ofType(recs, "bind_failure"); len(fs) != 0 {
				t.Errorf("%d bind failures in haproxy's reload, want none:\n%s", len(fs), recordsText(fs))
			}
		})
	}

	// Two unrelated haproxy on one port: both set SO_REUSEPORT, both
	// bind, and the kernel splits the connections between them. Not a
	// failure.
	t.Run("two_unrelated_reuseport", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "haproxy")
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		a := s.newHAProxy("a", port).start(t, nil)
		b := s.newHAProxy("b", port).start(t, nil)
		waitListening(t, port, 2)
		if !alive(a) || !alive(b) {
			t.Fatalf("haproxy a (pid %d, running %v) and b (pid %d, running %v) must both run", a, alive(a), b, alive(b))
		}
		recs := tr.stop(t)
		if fs := ofType(recs, "bind_failure"); len(fs) != 0 {
			t.Errorf("%d bind failures for two haproxy sharing a port with SO_REUSEPORT, want none:\n%s", len(fs), recordsText(fs))
		}
	})
}
