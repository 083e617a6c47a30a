package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestRecoveredCountsRefusedConnections: a rolling restart told from the
// side of a client hammering the port, in a private network namespace. A
// server (a helper process listening as servers do, never accepting)
// holds the port, a second instance fails to bind it (the incident
// opens), and a client of 4 goroutines connects in a tight loop: its
// connections pile up in the old server's queue; the old server is
// stopped with SIGTERM (the kernel resets the connections in its queue)
// while they keep connecting, are refused while nothing listens, and
// reach the new instance once it listens. The released record's
// reset_connections must equal the ECONNRESETs the client saw, and the
// recovered record's refused_connections its ECONNREFUSEDs — or, on a
// kernel that cannot count those, be absent with the start record
// saying so. The report says them in one line, and its page draws them
// on the kernel's lane.
func TestRecoveredCountsRefusedConnections(t *testing.T) {
	testenv.RequireRoot(t)
	ns, inode := testenv.NewNetns(t)
	in := testenv.InNetns(ns)
	// Below the ephemeral range: a client's own port is never the
	// server's (a connect to itself would succeed while nothing listens).
	const port = 18022
	var refused, reset, eof int
	lines := runTraceOut(t, func(out string) {
		// The old server: a backlog room enough for the hammering.
		old := testenv.StartHelper(t, fmt.Sprintf("serveq 127.0.0.1 %d 4096", port), in...)
		second := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 127.0.0.1 %d", port), in...)
		if second.Line[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
			t.Fatalf("the second instance's bind: %q, want errno EADDRINUSE", second.Line)
		}
		waitFailureIn(t, out, int(port), inode)
		hammer := testenv.StartHelper(t, fmt.Sprintf("hammer 127.0.0.1 %d %d", port, hammerClients), in...)
		hammerStats(t, hammer, "connections in the old server's queue", func(est, _ int) bool { return est >= 50 })
		syscall.Kill(old.PID, syscall.SIGTERM)
		old.Cmd.Wait()
		hammerStats(t, hammer, "refusals while nothing listens", func(_, ref int) bool { return ref >= 200 })
		testenv.StartHelper(t, fmt.Sprintf("serveq 127.0.0.1 %d 4096", port), in...)
		done, err := hammer.Say("stop")
		if err != nil {
			t.Fatal(err)
		}
		var alive, other int
		if _, err := fmt.Sscanf(done, "done %d %d %d %d %d", &refused, &reset, &alive, &eof, &other); err != nil {
			t.Fatalf("hammer said %q: %v", done, err)
		}
		t.Logf("the client: %d ECONNREFUSED, %d ECONNRESET, %d connections alive, %d closed, %d other errors", refused, reset, alive, eof, other)
		// A handshake that completes while the listener closes makes a
		// child that inherits the closing listener's shutdown: the kernel
		// sends it a FIN at once (traced on 6.18, under load: tcp_shutdown
		// from tcp_child_process), so its client reads EOF, not the reset
		// that follows, whether the child made it into the queue (and is
		// counted) or not. Each of the client's goroutines has one
		// handshake in flight at most.
		if other != 0 || eof > hammerClients || refused == 0 || reset == 0 {
			t.Errorf("the client: %d other errors, %d closed, %d refused, %d reset: want no other error, at most %d closed (a handshake each that completed as the listener closed), and some of each", other, eof, refused, reset, hammerClients)
		}
	}, func(lines [][]byte) bool {
		for _, l := range lines {
			var r struct {
				Type  string
				Netns uint32
			}
			if json.Unmarshal(l, &r) == nil && r.Type == events.TypeRecovered && r.Netns == inode {
				return true
			}
		}
		return false
	}, "--port", strconv.Itoa(port), "--fold", "0")
	schemaLines(t, lines)
	var start events.Start
	var rec *events.Recovered
	var rel *events.Released
	for _, l := range lines {
		var r struct{ Type string }
		json.Unmarshal(l, &r)
		switch r.Type {
		case events.TypeStart:
			json.Unmarshal(l, &start)
		case events.TypeReleased:
			if r := (&events.Released{}); json.Unmarshal(l, r) == nil && r.Netns == inode {
				rel = r
			}
		case events.TypeRecovered:
			if r := (&events.Recovered{}); json.Unmarshal(l, r) == nil && r.Netns == inode {
				rec = r
			}
		}
	}
	if rec == nil || rel == nil {
		t.Fatalf("recovered %v, released %v: want both", rec, rel)
	}
	// The kernel reads the old listener's accept queue as it closes:
	// every kernel with tp_btf measures it. A connection closed as the
	// listener closed (see above) may be in the queue or not.
	t.Logf("the clients saw %d ECONNRESET and %d closed; released: reset_connections %+v", reset, eof, rel.ResetConnections)
	if c := rel.ResetConnections; c == nil || c.Count < uint64(reset) || c.Count > uint64(reset+eof) || !c.First.Equal(rel.Time) {
		t.Fatalf("released: reset_connections %+v, the clients saw %d ECONNRESET and %d connections closed", c, reset, eof)
	}
	reset = int(rel.ResetConnections.Count) // what the report must say
	if why, ok := start.Limits["client_impact"]; ok {
		if rec.RefusedConnections != nil {
			t.Errorf("the start record says client impact is not measured (%s), the recovered record counts %+v", why, rec.RefusedConnections)
		}
		if !testenv.KernelAtLeast(t, 5, 17) {
			return
		}
		t.Fatalf("kernel 5.17+ but client impact not measured: %s", why)
	}
	if rec.DroppedDatagrams != nil {
		t.Errorf("a TCP port's recovery counts dropped datagrams: %+v", rec.DroppedDatagrams)
	}
	c := rec.RefusedConnections
	t.Logf("the client saw %d ECONNREFUSED; recovered: refused_connections %+v", refused, c)
	if c == nil || c.Count != uint64(refused) {
		t.Fatalf("recovered: refused_connections %+v, the client saw %d ECONNREFUSED", c, refused)
	}
	if c.First.IsZero() || c.Last.Before(c.First) || c.Last.After(rec.Time) {
		t.Errorf("refused_connections: first %v, last %v, recovered at %v", c.First, c.Last, rec.Time)
	}
	// The report says it in one line.
	log := filepath.Join(t.TempDir(), "trace.jsonl")
	if err := os.WriteFile(log, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bindwatchBin, "report", "--format", "text", log).CombinedOutput()
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	want := fmt.Sprintf("clients: %d connection attempts refused during the ", refused)
	want2 := fmt.Sprintf("gap; %d connections in the old listener's queue reset at release", reset)
	t.Logf("report:\n%s", out)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), want2) {
		t.Errorf("report does not say %q ... %q:\n%s", want, want2, out)
	}
	// The page says it too, in the incident's block.
	page := filepath.Join(t.TempDir(), "report.html")
	if out, err := exec.Command(bindwatchBin, "report", "--html", page, log).CombinedOutput(); err != nil {
		t.Fatalf("report --html: %v\n%s", err, out)
	}
	html, _ := os.ReadFile(page)
	want = fmt.Sprintf("<b>clients:</b> %d connection attempts refused during the ", refused)
	want2 = strings.ReplaceAll(want2, "'", "&#39;") // html/template's escape
	if !strings.Contains(string(html), want) || !strings.Contains(string(html), want2) {
		t.Errorf("the report page does not say %q ... %q", want, want2)
	}
	// And draws them on the kernel's lane.
	for _, want := range []string{`class="mark refused" data-kind="refused" data-at-ms=`, fmt.Sprintf(`data-count="%d"`, refused),
		fmt.Sprintf(">%d refused</text>", refused), `class="mark reset"`, fmt.Sprintf(">%d reset</text>", reset)} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the report page's kernel lane does not draw %q", want)
		}
	}
}

// waitFailureIn waits for a bind_failure record of port in the network
// namespace netns: the incident has opened.
func waitFailureIn(t *testing.T, out string, port int, netns uint32) {
	t.Helper()
	waitRecords(t, out, "the bind failure's record (the incident opens)", func(recs []events.Record) bool {
		for _, f := range ofType[events.Failure](recs, port) {
			if f.Process.Netns == netns {
				return true
			}
		}
		return false
	})
}

// waitFor waits until cond holds, polling.
// The bound is for a hang, not a pace: a loaded machine (another test
// run beside this one) starts python and bindwatch many times slower.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 3 minutes", what)
		}
	}
}

// hammerClients is how many goroutines of the hammer connect at once.
const hammerClients = 4

// hammerStats waits until the hammer's counts (connections established,
// attempts refused) satisfy cond.
func hammerStats(t *testing.T, h *testenv.HelperProc, what string, cond func(established, refused int) bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		l, err := h.Say("stats")
		if err != nil {
			t.Fatal(err)
		}
		var est, ref int
		if _, err := fmt.Sscanf(l, "stats %d %d", &est, &ref); err != nil {
			t.Fatalf("hammer said %q: %v", l, err)
		}
		return cond(est, ref)
	})
}

// TestReleasedResetsUnknownWhenQueueMayMigrate: with
// net.ipv4.tcp_migrate_req set and another listener in the closing
// listener's SO_REUSEPORT group, the kernel moves the connections in its
// queue to that listener instead of resetting them, so the release does
// not claim resets (reset_connections absent, reset_connections_unknown
// says why) — and the clients saw none; with the sysctl unset, the same
// restart's resets are counted, as many as the clients saw. Each in a
// private network namespace, with its own sysctl.
func TestReleasedResetsUnknownWhenQueueMayMigrate(t *testing.T) {
	testenv.RequireRoot(t)
	if !testenv.KernelAtLeast(t, 5, 14) {
		t.Log("before 5.14 the kernel never migrates a listener's queue: the release counts its resets (TestRecoveredCountsRefusedConnections)")
	}
	port := testenv.FreePort(t)
	type run struct {
		migrate      bool
		inode        uint32
		reset, alive int
	}
	runs := []*run{{migrate: true}, {migrate: false}}
	released := func(lines [][]byte, inode uint32) *events.Released {
		for _, l := range lines {
			var r events.Released
			if json.Unmarshal(l, &r) == nil && r.Type == events.TypeReleased && r.Netns == inode && r.Port == uint16(port) {
				return &r
			}
		}
		return nil
	}
	lines := runTraceOut(t, func(out string) {
		for _, r := range runs {
			if r.migrate && !testenv.KernelAtLeast(t, 5, 14) {
				continue
			}
			name, inode := testenv.NewNetns(t)
			r.inode = inode
			in := testenv.InNetns(name)
			if r.migrate {
				testenv.SetNetnsSysctl(t, name, "net/ipv4/tcp_migrate_req", "1")
			}
			// Two servers in one SO_REUSEPORT group; the newest is the
			// holder bindwatch records, and closes.
			testenv.StartHelper(t, fmt.Sprintf("serveq 127.0.0.1 %d 4096 reuseport", port), in...)
			newest := testenv.StartHelper(t, fmt.Sprintf("serveq 127.0.0.1 %d 4096 reuseport", port), in...)
			if l := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 127.0.0.1 %d", port), in...).Line; l[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
				t.Fatalf("a bind beside the group: %q, want errno EADDRINUSE", l)
			}
			waitFailureIn(t, out, int(port), inode)
			// Clients: the kernel spreads them over the group by hash.
			ns, err := os.Open("/run/netns/" + name)
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			var fds []int
			testenv.InPrivateNetns(t, ns, func() {
				for range 40 {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { unix.Close(fd) })
					if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
						t.Fatalf("connect to the group: %v", err)
					}
					fds = append(fds, fd)
				}
			})
			if l, err := newest.Say("close"); err != nil || l != "closed" {
				t.Fatalf("close the newest listener: %q %v", l, err)
			}
			waitFor(t, "the released record", func() bool { return released(readLines(out), inode) != nil })
			buf := make([]byte, 1)
			for _, fd := range fds {
				switch _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); {
				case errors.Is(err, unix.ECONNRESET):
					r.reset++
				case errors.Is(err, unix.EAGAIN):
					r.alive++
				default:
					t.Errorf("read on a client's connection: %v, want ECONNRESET or EAGAIN", err)
				}
			}
			t.Logf("tcp_migrate_req %v: the clients saw %d ECONNRESET, %d connections alive", r.migrate, r.reset, r.alive)
		}
	}, nil, "--port", strconv.Itoa(port), "--fold", "0")
	schemaLines(t, lines)
	for _, r := range runs {
		if r.inode == 0 {
			continue
		}
		rel := released(lines, r.inode)
		if rel == nil {
			t.Fatalf("tcp_migrate_req %v: no released record", r.migrate)
		}
		t.Logf("tcp_migrate_req %v: released: reset_connections %+v, unknown %q", r.migrate, rel.ResetConnections, rel.ResetUnknown)
		if r.migrate {
			if rel.ResetConnections != nil || !strings.Contains(rel.ResetUnknown, "tcp_migrate_req") {
				t.Errorf("migration on: reset_connections %+v, reset_connections_unknown %q: want it absent, and why", rel.ResetConnections, rel.ResetUnknown)
			}
			if r.reset != 0 {
				t.Errorf("migration on: the clients saw %d ECONNRESET, want 0 (their connections moved to the other listener)", r.reset)
			}
			continue
		}
		if r.reset == 0 {
			t.Fatal("migration off: no client connection was reset: none was in the closing listener's queue")
		}
		if c := rel.ResetConnections; c == nil || c.Count != uint64(r.reset) || rel.ResetUnknown != "" {
			t.Errorf("migration off: reset_connections %+v (unknown %q), the clients saw %d ECONNRESET", c, rel.ResetUnknown, r.reset)
		}
	}
}

// TestRealServerRestartUnderHammer: the rolling restart of a real server
// started as its users start it — python3 -m http.server, which accepts
// every connection on a thread of its own — with a client hammering it,
// in a private network namespace: a second instance fails to bind (the
// incident opens), the first is stopped with SIGTERM while the client
// connects in a tight loop, and a new one starts. The connections the
// server had accepted get its close (end of file) as it exits; those
// still in its queue the kernel's reset; the attempts in the gap are
// refused. The records' counts must equal the client's ECONNRESETs and
// ECONNREFUSEDs.
func TestRealServerRestartUnderHammer(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Require(t, "python3", "runs the real server (python3 -m http.server)")
	if !testenv.KernelAtLeast(t, 5, 17) {
		t.Skip("refused connections are counted from 5.17 (TestRecoveredCountsRefusedConnections checks what older kernels say)")
	}
	ns, inode := testenv.NewNetns(t)
	in := testenv.InNetns(ns)
	const port = 18023
	dir := t.TempDir()
	serve := func() *exec.Cmd {
		argv := append(append([]string{}, in...), "python3", "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	var refused, reset, eof int
	lines := runTraceOut(t, func(out string) {
		old := serve()
		// The second instance: a bind that fails once the first listens,
		// by a process that stays (one whose failing processes all exited
		// would be abandoned 2 s later).
		// Waited for in the server's own view of its namespace's sockets:
		// a probe bind could hold the port the moment the server binds.
		listening := fmt.Sprintf("0100007F:%04X 00000000:0000 0A", port)
		waitFor(t, "the server to listen", func() bool {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", old.Process.Pid))
			return strings.Contains(string(b), listening)
		})
		if h := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 127.0.0.1 %d", port), in...); h.Line[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
			t.Fatalf("a bind beside the running server: %q, want errno EADDRINUSE", h.Line)
		}
		waitFailureIn(t, out, int(port), inode)
		hammer := testenv.StartHelper(t, fmt.Sprintf("hammer 127.0.0.1 %d %d", port, hammerClients), in...)
		hammerStats(t, hammer, "connections to the running server", func(est, _ int) bool { return est >= 50 })
		old.Process.Signal(syscall.SIGTERM)
		old.Wait()
		hammerStats(t, hammer, "refusals while nothing listens", func(_, ref int) bool { return ref >= 200 })
		serve()
		done, err := hammer.Say("stop")
		if err != nil {
			t.Fatal(err)
		}
		var alive, other int
		if _, err := fmt.Sscanf(done, "done %d %d %d %d %d", &refused, &reset, &alive, &eof, &other); err != nil {
			t.Fatalf("hammer said %q: %v", done, err)
		}
		t.Logf("the client: %d ECONNREFUSED, %d ECONNRESET, %d closed by the server, %d alive, %d other errors", refused, reset, eof, alive, other)
		if other != 0 || refused == 0 {
			t.Errorf("the client: %d other errors, %d refused: want no other error, and refusals", other, refused)
		}
	}, func(lines [][]byte) bool {
		for _, l := range lines {
			var r events.Recovered
			if json.Unmarshal(l, &r) == nil && r.Type == events.TypeRecovered && r.Netns == inode {
				return true
			}
		}
		return false
	}, "--port", strconv.Itoa(port), "--fold", "0")
	schemaLines(t, lines)
	var rel *events.Released
	var rec *events.Recovered
	for _, l := range lines {
		var r struct {
			Type  string
			Netns uint32
		}
		if json.Unmarshal(l, &r) != nil || r.Netns != inode {
			continue
		}
		switch r.Type {
		case events.TypeReleased:
			rel = &events.Released{}
			json.Unmarshal(l, rel)
		case events.TypeRecovered:
			rec = &events.Recovered{}
			json.Unmarshal(l, rec)
		}
	}
	if rel == nil || rec == nil {
		t.Fatalf("released %v, recovered %v: want both", rel, rec)
	}
	t.Logf("released: reset_connections %+v; recovered: refused_connections %+v", rel.ResetConnections, rec.RefusedConnections)
	// A handshake completing as the listener closes is sent a FIN before
	// its reset (TestRecoveredCountsRefusedConnections): its client reads
	// EOF, like the connections the server itself closed, yet the kernel
	// counts it if it reached the queue. One per client goroutine at most.
	if c := rel.ResetConnections; c == nil || c.Count < uint64(reset) || c.Count > uint64(reset+min(eof, hammerClients)) {
		t.Errorf("released: reset_connections %+v, the client saw %d ECONNRESET and %d connections closed", c, reset, eof)
	}
	if c := rec.RefusedConnections; c == nil || c.Count != uint64(refused) {
		t.Errorf("recovered: refused_connections %+v, the client saw %d ECONNREFUSED", c, refused)
	}
}
