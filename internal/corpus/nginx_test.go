package corpus

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// nginx is an nginx instance of a scene: its own directory, configuration,
// pid file and error log.
type nginx struct {
	s    *scene
	dir  string
	conf string
}

// newNginx writes an nginx.conf as Debian ships it — daemon on (the
// default), a master and its workers running as www-data, a pid file —
// with its files under the scene's directory name, serving "ok" on each
// of listens (nginx's listen parameters: "127.0.0.1:8080", "[::]:8080
// ipv6only=off").
func (s *scene) newNginx(name string, listens ...string) *nginx {
	s.t.Helper()
	n := &nginx{s: s, dir: filepath.Join(s.dir, name)}
	n.conf = filepath.Join(n.dir, "nginx.conf")
	if err := os.Mkdir(n.dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	n.listen(listens...)
	return n
}

// listen rewrites the configuration to listen on listens.
func (n *nginx) listen(listens ...string) {
	n.s.t.Helper()
	var l strings.Builder
	for _, a := range listens {
		fmt.Fprintf(&l, "\t\tlisten %s;\n", a)
	}
	conf := fmt.Sprintf(`user www-data;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
%[2]s		return 200 "ok\n";
	}
}
`, n.dir, l.String())
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		n.s.t.Fatal(err)
	}
}

// command is `nginx -c CONF ARGS...`, as a user types it.
func (n *nginx) command(args ...string) *proc {
	cmd := n.s.command(nginxPath, append([]string{"-p", n.dir + "/", "-c", n.conf, "-e", filepath.Join(n.dir, "error.log")}, args...)...)
	return n.s.start(cmd)
}

// start starts nginx and returns its master's pid, once its workers run.
func (n *nginx) start(t *testing.T) int {
	t.Helper()
	p := n.command()
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("nginx did not start (exit %d):\n%s\n%s", code, p.output(), n.errorLog())
	}
	master := readPID(t, n.pidFile())
	n.workers(t, master)
	return master
}

func (n *nginx) pidFile() string { return filepath.Join(n.dir, "nginx.pid") }

func (n *nginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// workers waits for master's two workers and returns their pids.
func (n *nginx) workers(t *testing.T, master int) []int {
	t.Helper()
	var w []int
	waitUntil(t, 15*time.Second, "nginx's workers", func() (bool, string) {
		w = w[:0]
		for _, c := range n.s.children(master) {
			if strings.HasPrefix(cmdline(c), "nginx: worker process") {
				w = append(w, c)
			}
		}
		return len(w) == 2, fmt.Sprintf("master %d has workers %v", master, w)
	})
	return w
}

func TestNginx(t *testing.T) {
	t.Parallel()

	// The second start of nginx as packaged: it binds before it
	// daemonizes, fails (retrying 5 times, 500 ms apart) and gives up.
	// The holder is the first nginx's master — itself a daemonized child
	// whose parent exited at once — and its workers: the running
	// instance, not a leftover, and no hint may kill it.
	t.Run("daemon_on_twice", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, nginxPath)
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		first := s.newNginx("first", fmt.Sprintf("127.0.0.1:%d", port))
		master := first.start(t)
		workers := first.workers(t, master)
		httpOK(t, port)

		second := s.newNginx("second", fmt.Sprintf("127.0.0.1:%d", port))
		p := second.command()
		if code := p.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("the second nginx started:\n%s", p.output())
		}
		if !strings.Contains(p.output(), "Address already in use") {
			t.Errorf("the second nginx failed for another reason:\n%s", p.output())
		}
		httpOK(t, port)
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, p.pid(), "the second nginx") {
			alreadyRunning(t, f, master, workers...)
			// Started with its own -p and -c, as the test's nginx is:
			// `nginx -s reload` would signal the default configuration's
			// master, so the hint names this one by pid.
			hintHas(t, f, fmt.Sprintf("SIGHUP to its master, pid %d", master), "not `nginx -s reload`", fmt.Sprintf("SIGQUIT to pid %d", master))
		}
		tr.gaveUp(t, port, "already_running", append(workers, master)...)
	})

	// A reload onto a port another program (socat) holds: the master
	// fails to bind the new port, names socat, and keeps serving with its
	// old configuration.
	t.Run("reload_onto_held_port", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, nginxPath, "socat")
		port, taken := testenv.FreePort(t), testenv.FreePort(t)
		socat := s.start(s.command("socat", fmt.Sprintf("TCP4-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", taken), "EXEC:/bin/cat"))
		waitListening(t, taken, 1)
		tr := startTrace(t, port, taken)
		n := s.newNginx("nginx", fmt.Sprintf("127.0.0.1:%d", port))
		master := n.start(t)

		n.listen(fmt.Sprintf("127.0.0.1:%d", taken))
		n.command("-s", "reload").wait(t, 30*time.Second)
		tr.failureBy(t, master)
		waitUntil(t, 15*time.Second, "nginx gives up the reload", func() (bool, string) {
			return strings.Contains(n.errorLog(), "still could not bind()"), n.errorLog()
		})
		httpOK(t, port)
		recs := tr.stop(t)
		for _, f := range failuresOf(recs, master) {
			if f.pid("port") != taken {
				t.Errorf("a failure on port %v, not the one socat holds (%d):\n%s", f.get("port"), taken, f)
			}
			wantCause(t, f, "port_in_use", "")
			holds(t, f, socat.pid())
			if !strings.Contains(f.str("diagnosis"), "socat") {
				t.Errorf("the diagnosis does not name socat:\n%s", f)
			}
			names(t, f, socat.pid())
			noKill(t, f, master)
		}
	})

	// `nginx -s quit` and a new start at once, as a stop-then-start
	// script does: while the old master finishes, the new nginx may fail
	// (and retry); the old one is quitting, never a leftover.
	t.Run("quit_then_start", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, nginxPath)
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		n := s.newNginx("nginx", fmt.Sprintf("127.0.0.1:%d", port))
		old := n.start(t)
		n.command("-s", "quit").wait(t, 30*time.Second)
		p := n.command()
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("nginx did not start after -s quit (exit %d):\n%s\n%s", code, p.output(), n.errorLog())
		}
		waitGone(t, old)
		httpOK(t, port)
		recs := tr.stop(t)
		fs := ofType(recs, "bind_failure")
		t.Logf("%d failures while the old nginx quit", len(fs))
		for _, f := range fs {
			notCause(t, f, "leftover")
			noKill(t, f, old)
		}
		for _, inc := range ofType(tr.report(t), "incident") {
			if inc.str("cause") == "leftover" {
				t.Errorf("the report calls the quitting nginx a leftover: %s", inc)
			}
			if inc.str("state") != "recovered" || inc.pid("recovered", "process", "pid") != p.pid() {
				t.Errorf("the incident is %q, recovered by pid %d; want recovered by the new nginx (pid %d)",
					inc.str("state"), inc.pid("recovered", "process", "pid"), p.pid())
			}
		}
	})

	// The binary upgrade of nginx's documentation: USR2 (a new master
	// execs, inheriting the listeners), WINCH (the old workers stop), QUIT
	// (the old master goes). Two masters share the listener by design: no
	// bind fails.
	t.Run("binary_upgrade", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, nginxPath)
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		n := s.newNginx("nginx", fmt.Sprintf("127.0.0.1:%d", port))
		old := n.start(t)
		oldWorkers := n.workers(t, old)

		syscall.Kill(old, syscall.SIGUSR2)
		if got := readPID(t, n.pidFile()+".oldbin"); got != old {
			t.Fatalf("nginx.pid.oldbin names %d, want the old master %d", got, old)
		}
		master := readPID(t, n.pidFile(), old)
		n.workers(t, master)
		syscall.Kill(old, syscall.SIGWINCH)
		for _, w := range oldWorkers {
			waitGone(t, w)
		}
		httpOK(t, port)
		syscall.Kill(old, syscall.SIGQUIT)
		waitGone(t, old)
		httpOK(t, port)
		recs := tr.stop(t)
		if fs := ofType(recs, "bind_failure"); len(fs) != 0 {
			t.Errorf("%d bind failures in nginx's binary upgrade, want none:\n%s", len(fs), recordsText(fs))
		}
	})

	// listen 0.0.0.0:P and [::]:P ipv6only=off: nginx's own IPv6 socket
	// covers IPv4 and collides with its own IPv4 one. The fix is one word
	// of nginx's configuration.
	t.Run("dual_stack_listen", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, nginxPath)
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		n := s.newNginx("nginx", fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf("[::]:%d ipv6only=off", port))
		p := n.command()
		if code := p.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("nginx started with two listeners on port %d:\n%s", port, p.output())
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, p.pid(), "nginx") {
			wantCause(t, f, "self_conflict", "")
			holds(t, f, p.pid())
			hintHas(t, f, "ipv6only=on")
		}
		tr.gaveUp(t, port, "self_conflict")
	})
}

// nginxPath is nginx by its full path, as Debian's unit starts it: the
// binary upgrade (USR2) re-executes argv[0].
const nginxPath = "/usr/sbin/nginx"
