package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// nginxConf is a configuration of the packaged nginx that keeps all it
// writes in dir and listens on 127.0.0.1:port (daemon on, as packaged).
func nginxConf(t *testing.T, dir, name string, port int) string {
	t.Helper()
	conf := filepath.Join(dir, name+".conf")
	text := fmt.Sprintf(`pid %[1]s/%[2]s.pid;
error_log %[1]s/%[2]s.error.log;
worker_processes 1;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server { listen 127.0.0.1:%[3]d; return 204; }
}
`, dir, name, port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// nginxCmd is the packaged nginx started with conf, its prefix dir.
func nginxCmd(t *testing.T, dir, conf string) *exec.Cmd {
	t.Helper()
	testenv.Require(t, "nginx", "a real nginx holds the port")
	path, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(path, "-p", dir, "-c", conf)
}

// startNginx starts nginx as packaged (it daemonizes: the command returns
// once the master runs in the background), waits for its pid file, and
// stops it (SIGQUIT, then SIGKILL) at the end of the test.
func startNginx(t *testing.T, dir, name string, port int) int {
	t.Helper()
	cmd := nginxCmd(t, dir, nginxConf(t, dir, name, port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	pidFile := filepath.Join(dir, name+".pid")
	testenv.WaitForFile(t, pidFile, 3*time.Minute, func() string { return "" })
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("nginx pid file %s: %q", pidFile, b)
	}
	t.Cleanup(func() { stopNginx(pid) })
	return pid
}

// stopNginx stops the nginx master pid as its users do (QUIT: the workers
// finish and exit), and kills it after 5 s; workers it leaves behind (a
// master killed outright orphans them, still holding the port) are killed
// too, so no test leaves a listener on the machine.
func stopNginx(pid int) {
	workers := testenv.ChildPIDs(pid)
	syscall.Kill(pid, syscall.SIGQUIT)
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, w := range workers {
		if testenv.Comm(w) == "nginx" {
			syscall.Kill(w, syscall.SIGKILL)
		}
	}
}

// liveEntry is one record of the text output: its first line, and the
// indented lines under it (why, fix).
type liveEntry struct {
	at   time.Time
	head string
	body []string
}

var clockPrefix = regexp.MustCompile(`^(\d\d:\d\d:\d\d\.\d\d\d) `)

// liveEntries splits text output into records; lines that are not part of
// one (bindwatch's messages on standard error) are left out.
func liveEntries(out []byte) []liveEntry {
	var es []liveEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := clockPrefix.FindStringSubmatch(line); m != nil {
			at, _ := time.Parse("15:04:05.000", m[1])
			es = append(es, liveEntry{at: at, head: line})
			continue
		}
		if strings.HasPrefix(line, "  ") && len(es) > 0 {
			es[len(es)-1].body = append(es[len(es)-1].body, strings.TrimSpace(line))
		}
	}
	return es
}

// portLive is what text output says of one port's failures.
type portLive struct {
	full, short, repeatsLines int
	failures                  uint64 // full + short + folded
	whys, fixes               int
	recovered                 int // index of its recovered entry, or -1
	last                      int // index of its last failure or repeats entry
	bad                       []string
}

var foldedCount = regexp.MustCompile(`failed the same way (\d+) more times?`)

func livePort(es []liveEntry, port int) portLive {
	p := portLive{recovered: -1, last: -1}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i, e := range es {
		switch {
		case strings.Contains(e.head, " RECOVERED ") && strings.Contains(e.head, addr+":"):
			p.recovered = i
		case strings.Contains(e.head, " EADDRINUSE "):
			if m := foldedCount.FindStringSubmatch(e.head); m != nil && strings.Contains(e.head, " port "+strconv.Itoa(port)+" ") {
				p.bad = append(p.bad, "folded line without the address: "+e.head)
			}
			if !strings.Contains(e.head, addr+" ") {
				continue
			}
			p.last = i
			if m := foldedCount.FindStringSubmatch(e.head); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				p.failures += n
				p.repeatsLines++
				continue
			}
			p.failures++
			for _, b := range e.body {
				if strings.HasPrefix(b, "why:") {
					p.whys++
				}
				if strings.HasPrefix(b, "fix:") {
					p.fixes++
				}
			}
			if strings.Contains(e.head, "(again") {
				p.short++
				if len(e.body) > 0 {
					p.bad = append(p.bad, "a short line with lines under it: "+e.head)
				}
			} else {
				p.full++
			}
		}
	}
	return p
}

// checkTimeOrder fails the test unless the records are in time order.
func checkTimeOrder(t *testing.T, what string, es []liveEntry) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		d := es[i].at.Sub(es[i-1].at)
		if d < -12*time.Hour { // midnight
			d += 24 * time.Hour
		}
		if d < 0 {
			t.Errorf("%s: out of time order:\n  %s\n  %s", what, es[i-1].head, es[i].head)
		}
	}
}

// waitLive waits until the text outputs in paths each say what cond
// looks for about port.
func waitLive(t *testing.T, port int, what string, cond func(portLive) bool, paths ...string) {
	t.Helper()
	for deadline := time.Now().Add(recordsTimeout); ; time.Sleep(50 * time.Millisecond) {
		done := true
		for _, path := range paths {
			b, _ := os.ReadFile(path)
			done = done && cond(livePort(liveEntries(b), port))
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d: no %s in %q within %v", port, what, paths, recordsTimeout)
		}
	}
}

// Issue 18, item 8: a retry loop does not flood the terminal. A real
// nginx holds a port and a second nginx retries its bind 5 times in 2.5 s;
// a helper retries every 400 ms until its holder lets go (once the
// tracers saw three of its failures), and keeps the port. On a terminal each gets one why/fix,
// then one short line per failure or fold, each with the address, all in
// time order (the recovery after the folds it counts). --quiet writes the failures alone; --no-hints no fix lines.
func TestLiveTextRetryLoop(t *testing.T) {
	testenv.RequireRoot(t)
	nginxPort, helperPort := testenv.FreePort(t), testenv.FreePort(t)
	for helperPort == nginxPort {
		helperPort = testenv.FreePort(t)
	}
	dir := t.TempDir()
	startNginx(t, dir, "serving", nginxPort)
	holder := startHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", helperPort))
	ports := []string{"--port", strconv.Itoa(nginxPort), "--port", strconv.Itoa(helperPort)}

	// The same scenario seen by --quiet and --no-hints tracers.
	quietOut, noHintsOut := filepath.Join(t.TempDir(), "quiet.txt"), filepath.Join(t.TempDir(), "nohints.txt")
	quiet := startTracing(t, append([]string{"--format", "text", "--output", quietOut, "--quiet"}, ports...)...)
	noHints := startTracing(t, append([]string{"--format", "text", "--output", noHintsOut, "--no-hints"}, ports...)...)

	ready := filepath.Join(t.TempDir(), "ready")
	out := onTerminal(t, func(cmd *exec.Cmd) {
		testenv.WaitForReady(t, ready, cmd.Process, func() string { return "" })
		// A second nginx on the port: it tries bind() 5 times, 500 ms
		// apart, then gives up.
		second := nginxCmd(t, dir, nginxConf(t, dir, "second", nginxPort))
		if out, err := second.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("still could not bind()")) {
			t.Errorf("second nginx: %v, want it to give up on the port:\n%s", err, out)
		}
		// Attempts every 400 ms; once the tracers have seen three (no
		// fixed sleep: a loaded machine may run the helper's timer
		// late), the port is freed and the next attempt takes it, and
		// holds it until the test ends: a tracer that reads the
		// listen() only after its taker closed it takes it for a check
		// (PORT FREE), not the recovery.
		startHelper(t, fmt.Sprintf("retry tcp 127.0.0.1 %d 400 600000", helperPort))
		waitLive(t, helperPort, "three failures", func(p portLive) bool { return p.failures >= 3 }, quietOut, noHintsOut)
		holder.stdin.Close()
		waitLive(t, helperPort, "recovery", func(p portLive) bool { return p.recovered >= 0 }, noHintsOut)
		cmd.Process.Signal(syscall.SIGINT)
	}, append(ports, "--backend", testenv.Backend(), "--ready-file", ready)...)
	quiet.stop(t)
	noHints.stop(t)

	es := liveEntries(out)
	checkTimeOrder(t, "terminal", es)
	ng, hp := livePort(es, nginxPort), livePort(es, helperPort)
	for _, c := range []struct {
		name     string
		p        portLive
		failures uint64
	}{{"second nginx", ng, 5}, {"retrying helper", hp, 3}} {
		if c.p.full != 1 || c.p.whys != 1 || c.p.fixes != 1 {
			t.Errorf("%s: %d full failure lines, %d why and %d fix lines; want one of each", c.name, c.p.full, c.p.whys, c.p.fixes)
		}
		if c.p.short+c.p.repeatsLines == 0 || c.p.failures < c.failures || (c.name == "second nginx" && c.p.failures != c.failures) {
			t.Errorf("%s: %d short lines, %d folded lines, %d failures in all; want short lines with the address for %d failures", c.name, c.p.short, c.p.repeatsLines, c.p.failures, c.failures)
		}
		for _, b := range c.p.bad {
			t.Errorf("%s: %s", c.name, b)
		}
	}
	if hp.recovered < 0 || hp.recovered < hp.last {
		t.Errorf("retrying helper: recovered line at %d, its last failure or fold at %d: want the recovery last", hp.recovered, hp.last)
	}
	if t.Failed() {
		t.Logf("terminal:\n%s", out)
	}

	b, err := os.ReadFile(quietOut)
	if err != nil {
		t.Fatal(err)
	}
	qs := liveEntries(b)
	checkTimeOrder(t, "--quiet", qs)
	for _, port := range []int{nginxPort, helperPort} {
		if p := livePort(qs, port); p.full != 1 || p.whys+p.fixes != 0 || p.recovered >= 0 || p.failures < 3 {
			t.Errorf("--quiet, port %d: %d full lines, %d why/fix lines, recovered line %d, %d failures; want the failures alone", port, p.full, p.whys+p.fixes, p.recovered, p.failures)
		}
	}
	if bytes.Contains(b, []byte("bindwatch on ")) || bytes.Contains(b, []byte("bindwatch stopped")) {
		t.Errorf("--quiet wrote the start or stop line")
	}
	if t.Failed() {
		t.Logf("--quiet:\n%s", b)
	}
	b, err = os.ReadFile(noHintsOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{nginxPort, helperPort} {
		if p := livePort(liveEntries(b), port); p.whys != 1 || p.fixes != 0 {
			t.Errorf("--no-hints, port %d: %d why and %d fix lines; want one why, no fix:\n%s", port, p.whys, p.fixes, b)
		}
	}
}
