package corpus

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// script is the absolute path of a python program in testdata: python
// services are told apart by their script, so the tests run them by path
// as a unit file does.
func script(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPython(t *testing.T) {
	t.Parallel()

	// `python3 -m http.server` started twice: the same program (the
	// module, not the interpreter) already serves.
	t.Run("http_server_twice", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "python3")
		port := testenv.FreePort(t)
		args := []string{"-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1"}
		tr := startTrace(t, port)
		running := s.start(s.command("python3", args...))
		waitListening(t, port, 1)
		httpOK(t, port)
		second := s.start(s.command("python3", args...))
		if code := second.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("the second http.server exited 0:\n%s", second.output())
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, second.pid(), "the second http.server") {
			alreadyRunning(t, f, running.pid())
		}
		tr.gaveUp(t, port, "already_running", running.pid())
	})

	// A rolling restart: app_v2.py starts and retries bind() every 100 ms
	// while app_v1.py serves; the deploy sends v1 SIGTERM; v1 drains for
	// 0.6 s, holding the port, and exits; v2 gets the port. Two different
	// programs in one python: never a leftover, nor "already running". The
	// report names v2 as the recovery, a drain close to v1's 0.6 s, and a
	// port unserved for less time than it was contended.
	t.Run("rolling_restart", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "python3")
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		v1 := s.start(s.command("python3", script(t, "app_v1.py"), strconv.Itoa(port)))
		v1.waitLine(t, "ready")
		v2 := s.start(s.command("python3", script(t, "app_v2.py"), strconv.Itoa(port)))
		tr.failureBy(t, v2.pid())
		// The drain as the deploy sees it: from just before its SIGTERM
		// until it sees v1 gone — at least v1's 0.6 s, more on a busy
		// machine; bindwatch's drain_ms lies within.
		signalled := time.Now()
		v1.cmd.Process.Signal(syscall.SIGTERM)
		if code := v1.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("app_v1.py exited %d after SIGTERM:\n%s", code, v1.output())
		}
		seen := time.Since(signalled)
		v2.waitLine(t, "serving")
		rec := tr.waitFor(t, 15*time.Second, "recovered record", func(r record) bool {
			return r.str("type") == "recovered" && r.pid("port") == port
		})
		httpOK(t, port)
		recs := tr.stop(t)
		for _, f := range failuresOf(recs, v2.pid()) {
			notCause(t, f, "leftover", "already_running")
			holds(t, f, v1.pid())
		}
		for _, k := range []string{"contention_ms", "unserved_ms", "drain_ms"} {
			if _, ok := rec.num(k); !ok {
				t.Errorf("the recovered record has no %s: %s", k, rec)
			}
		}

		inc := incidentOn(t, tr.report(t), port)
		if inc.str("cause") == "leftover" {
			t.Errorf("the report calls app_v1.py a leftover: %s", inc.str("diagnosis"))
		}
		if inc.str("state") != "recovered" {
			t.Errorf("the incident is %q, want recovered", inc.str("state"))
		}
		if pid := inc.pid("recovered", "process", "pid"); pid != v2.pid() {
			t.Errorf("the incident's recovery is pid %d, want app_v2.py (pid %d)", pid, v2.pid())
		}
		if c := fmt.Sprint(inc.get("recovered", "process", "cmdline")); !strings.Contains(c, "app_v2.py") {
			t.Errorf("the incident's recovery is %s, want app_v2.py", c)
		}
		// JSON keeps the failure's hint as it was; the report a person
		// reads gives it as advice for next time, without killing v1.
		if text := tr.reportText(t); killsPID(text, v1.pid()) || !strings.Contains(text, "next time:") {
			t.Errorf("the report of the recovered incident kills app_v1.py (pid %d), which its timeline shows let go, or gives no advice for next time:\n%s", v1.pid(), text)
		}
		contention, okC := inc.num("contention_ms")
		unserved, okU := inc.num("unserved_ms")
		drain, okD := inc.num("drain_ms")
		if !okC || !okU || !okD {
			t.Fatalf("the incident lacks its durations: contention_ms %v, unserved_ms %v, drain_ms %v",
				inc.get("contention_ms"), inc.get("unserved_ms"), inc.get("drain_ms"))
		}
		t.Logf("contention %vms, unserved %vms, drain %vms; the deploy saw app_v1.py go %v after its SIGTERM", contention, unserved, drain, seen.Round(time.Millisecond))
		if drain < 550 || drain > float64(seen.Milliseconds()+20) {
			t.Errorf("drain_ms %v, want about 600: app_v1.py drains 0.6 s after SIGTERM, and the deploy saw it gone %v after sending it", drain, seen.Round(time.Millisecond))
		}
		if unserved >= contention {
			t.Errorf("unserved_ms %v is not less than contention_ms %v (v2 retried every 100 ms, v1 held the port until it exited)", unserved, contention)
		}
	})

	// A prefork server (fork without exec) whose parent is killed with
	// SIGKILL: its two workers keep the listening socket they inherited,
	// and the server started again fails. The instance is gone (its
	// listener was killed): a leftover, certainly. The workers never
	// exec'd: no SOCK_CLOEXEC advice, only closing it in the children.
	t.Run("prefork_parent_killed", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "python3")
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		server := s.start(s.command("python3", script(t, "prefork.py"), strconv.Itoa(port)))
		ready := strings.Fields(server.waitLine(t, "ready"))
		var workers []int
		for _, w := range ready[1:] {
			pid, _ := strconv.Atoi(w)
			workers = append(workers, pid)
		}
		// It serves a while before it is killed: an instance that ran,
		// not one that daemonized.
		for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(200 * time.Millisecond) {
			httpOK(t, port)
		}
		server.cmd.Process.Signal(syscall.SIGKILL)
		server.wait(t, 10*time.Second)
		for _, w := range workers {
			waitUntil(t, 10*time.Second, fmt.Sprintf("worker %d is orphaned", w), func() (bool, string) {
				st, err := procStat(w)
				return err == nil && st.ppid != server.pid(), fmt.Sprintf("parent %d, %v", st.ppid, err)
			})
		}
		httpOK(t, port) // the orphaned workers still serve

		again := s.start(s.command("python3", script(t, "prefork.py"), strconv.Itoa(port)))
		if code := again.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("prefork.py started again while its workers hold the port:\n%s", again.output())
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, again.pid(), "prefork.py started again") {
			wantCause(t, f, "leftover", "certain")
			for _, w := range workers {
				holds(t, f, w)
			}
			names(t, f, workers[0])
			if strings.Contains(f.str("hint"), "SOCK_CLOEXEC") {
				t.Errorf("the hint advises SOCK_CLOEXEC, but the workers never exec'd:\n%s", f)
			}
		}
		tr.gaveUp(t, port, "leftover")
	})

	// A double-fork daemon (bind, fork, setsid, fork; both parents exit 0
	// at once) started twice: the grandchild is the running instance.
	t.Run("double_fork_daemon_twice", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "python3")
		port := testenv.FreePort(t)
		pidFile := filepath.Join(s.dir, "daemon.pid")
		tr := startTrace(t, port)
		s.runOK(s.command("python3", script(t, "daemon.py"), strconv.Itoa(port), pidFile))
		running := readPID(t, pidFile)
		httpOK(t, port)
		second := s.start(s.command("python3", script(t, "daemon.py"), strconv.Itoa(port), pidFile))
		if code := second.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("the second daemon.py exited 0:\n%s", second.output())
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, second.pid(), "the second daemon.py") {
			alreadyRunning(t, f, running)
		}
		tr.gaveUp(t, port, "already_running", running)
	})
}
