package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// reusePortServer is a python3 server on 127.0.0.1:port with
// SO_REUSEPORT, TCP (listening) or UDP (bound), by its second argument;
// it says ready once the socket holds the port.
const reusePortServer = `import socket, sys, time
udp = sys.argv[2] == "udp"
s = socket.socket(type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
if not udp:
    s.listen()
print("ready", flush=True)
time.sleep(600)
`

func startReusePortServer(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	return startReusePort(t, exec.Command("python3", "-c", reusePortServer, strconv.Itoa(port), "tcp"))
}

// startReusePort starts cmd (a reusePortServer) and waits for it to hold
// its port.
func startReusePort(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("python3 is needed for this test: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("python3 reuseport server: %q, %v", line, err)
	}
	return cmd
}

// portShared returns the port_shared records of port among lines.
func portShared(t *testing.T, lines [][]byte, port int) []events.PortShared {
	t.Helper()
	var out []events.PortShared
	for _, l := range lines {
		var r events.PortShared
		if json.Unmarshal(l, &r) == nil && r.Type == events.TypePortShared && int(r.Port) == port {
			out = append(out, r)
		}
	}
	return out
}

// Two different programs in one SO_REUSEPORT group — a python3 server and
// socat joining it — get a port_shared record naming both, with the
// group's size; it matches the schema and the ECS form. The same program
// joining from the same cgroup (a second copy of one python3 script) gets
// one too, why copy, once both still hold the port after the grace.
func TestPortSharedTwoPrograms(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "the programs sharing the port", "socat", "python3")
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	var holder, same *exec.Cmd
	var joiner *exec.Cmd
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	counted := false
	lines := runTraceUntil(t, func() {
		holder = startReusePortServer(t, port)
		// The same script again: a copy, written after the grace.
		same = startReusePortServer(t, port)
		joiner = exec.Command("socat", "TCP-LISTEN:"+p+",bind=127.0.0.1,reuseport,fork", "SYSTEM:true")
		if err := joiner.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { joiner.Process.Kill(); joiner.Wait() })
	}, func(lines [][]byte) bool {
		// Written, and counted in /metrics.
		if len(portShared(t, lines, port)) < 2 {
			return false
		}
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		counted = strings.Contains(string(b), `bindwatch_port_shared_total{proto="tcp",why="program"} 1`)
		return counted
	}, "--port", p, "--metrics-addr", metricsAddr)
	if !counted {
		t.Errorf("bindwatch_port_shared_total{proto=tcp,why=program} is not 1")
	}
	recs := portShared(t, lines, port)
	if len(recs) != 2 {
		t.Fatalf("%d port_shared records of port %d, want 2 (socat joining python3, then the copy):\n%s", len(recs), port, joinLines(lines))
	}
	if c := recs[1]; c.Why != events.SharedCopy || c.Joiner.PID != same.Process.Pid || c.Holder.PID != holder.Process.Pid {
		t.Errorf("second record %+v: want the python3 copy %d joining %d, why copy", c, same.Process.Pid, holder.Process.Pid)
	}
	r := recs[0]
	if r.Joiner.PID != joiner.Process.Pid || r.Holder.PID != same.Process.Pid {
		t.Errorf("joiner pid %d, holder pid %d; want socat %d joining python3 %d or %d", r.Joiner.PID, r.Holder.PID,
			joiner.Process.Pid, holder.Process.Pid, same.Process.Pid)
	}
	if r.Why != events.SharedProgram || r.Proto != "tcp" || r.Syscall != "listen" || r.Addr != "127.0.0.1" || r.Source != events.SourceKernel {
		t.Errorf("port_shared %+v: want why program, tcp listen on 127.0.0.1, from the kernel", r)
	}
	if r.GroupSize != 3 || r.Programs != 2 {
		t.Errorf("group_size %d, programs %d; want 3 sockets of 2 programs", r.GroupSize, r.Programs)
	}
	if !strings.HasSuffix(r.Joiner.Exe, "socat") || !strings.Contains(r.Holder.Exe, "python3") {
		t.Errorf("joiner exe %q, holder exe %q: want socat and python3", r.Joiner.Exe, r.Holder.Exe)
	}
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if strings.Contains(string(l), `"port_shared"`) {
			var doc any
			if err := json.Unmarshal(l, &doc); err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(doc); err != nil {
				t.Errorf("port_shared does not match docs/schema.json: %v\n%s", err, l)
			}
		}
	}
	// The text and ECS forms of the same record.
	text := events.Text(&r)
	for _, want := range []string{"PORT SHARED", "socat", "python3", "about 1/3 each"} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q lacks %q", text, want)
		}
	}
	s := loadECSSchema(t)
	ecs := runTraceUntil(t, func() {
		// A new session seeds its registry with one of the group's
		// sockets (python3's or socat's): a third program joins.
		testenv.StartHelper(t, "hold tcp 127.0.0.1 "+p+" reuseport")
	}, func(lines [][]byte) bool {
		for _, l := range lines {
			if strings.Contains(string(l), "port-shared") {
				return true
			}
		}
		return false
	}, "--port", p, "--format", "ecs")
	var out strings.Builder
	for _, l := range ecs {
		out.Write(l)
		out.WriteByte('\n')
	}
	docs := ecsDocs(t, s, "port_shared", out.String())
	if len(docs["port_shared"]) != 1 {
		t.Fatalf("%d port_shared ECS documents, want 1:\n%s", len(docs["port_shared"]), out.String())
	}
	d := docs["port_shared"][0]
	if field(d, "event.kind") != "alert" || field(d, "server.port") != float64(port) || field(d, "bindwatch.port_shared.why") != "program" {
		t.Errorf("ECS port_shared: event.kind %v, server.port %v, why %v", field(d, "event.kind"), field(d, "server.port"), field(d, "bindwatch.port_shared.why"))
	}
}

// nginx's binary upgrade (USR2 to the master: a new master, the same
// program, takes the listening sockets over) is no silent sharing, even
// with reuseport listeners: no port_shared record.
func TestPortSharedNotNginxUpgrade(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := nginxConf(t, dir, "up", port)
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, []byte(strings.Replace(string(b), "listen 127.0.0.1:"+strconv.Itoa(port)+";", "listen 127.0.0.1:"+strconv.Itoa(port)+" reuseport;", 1)), 0o644)
	var master int
	lines := runTraceUntil(t, func() {
		master = startNginx(t, dir, "up", port)
		// The new master writes up.pid, the old one renames its own.
		// Once, under two test runs at once, the upgrade never started
		// (no .oldbin in 3 minutes). USR2 is sent again until it does: a
		// master already upgrading ignores another ("ignoring" in its
		// log), and the log is shown if it never starts.
		oldbin := filepath.Join(dir, "up.pid.oldbin")
		for deadline := time.Now().Add(testenv.StartTimeout); ; {
			if err := syscall.Kill(master, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			if waitFile(oldbin, 2*time.Second) {
				break
			}
			if time.Now().After(deadline) {
				errs, _ := os.ReadFile(filepath.Join(dir, "up.error.log"))
				t.Fatalf("%s did not appear; nginx's error log:\n%s", oldbin, errs)
			}
		}
		newPID := waitNewMaster(t, filepath.Join(dir, "up.pid"), master)
		t.Cleanup(func() { stopNginx(newPID) })
		// The upgrade's end: the old master goes (QUIT), the new serves.
		syscall.Kill(master, syscall.SIGQUIT)
	}, func(lines [][]byte) bool {
		return syscall.Kill(master, 0) != nil // the old master is gone
	}, "--port", strconv.Itoa(port))
	if recs := portShared(t, lines, port); len(recs) != 0 {
		t.Errorf("nginx's binary upgrade got %d port_shared records, want none:\n%s", len(recs), joinLines(lines))
	}
}

// waitNewMaster waits until the pid file names a master other than old.
func waitNewMaster(t *testing.T, pidFile string, old int) int {
	t.Helper()
	for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != old {
			return pid
		}
	}
	t.Fatalf("no new nginx master in %s", pidFile)
	return 0
}

func joinLines(lines [][]byte) string {
	var b strings.Builder
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// `who` shows a SO_REUSEPORT group and its members: python3 and socat
// sharing a port are one group of 2 sockets of 2 programs.
func TestWhoShowsReusePortGroup(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	py := startReusePortServer(t, port)
	sc := exec.Command("socat", "TCP-LISTEN:"+p+",bind=127.0.0.1,reuseport,fork", "SYSTEM:true")
	if err := sc.Start(); err != nil {
		t.Fatalf("socat is needed for this test: %v", err)
	}
	t.Cleanup(func() { sc.Process.Kill(); sc.Wait() })
	var rec events.Who
	var raw string
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(20 * time.Millisecond) {
		res := bindwatch(t, "who", p+"/tcp", "--format", "json")
		rec, raw = events.Who{}, res.stdout
		if err := json.Unmarshal([]byte(res.stdout), &rec); err != nil {
			t.Fatalf("who --format json: %v; %s", err, res)
		}
		if len(rec.ReusePortGroups) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(rec.ReusePortGroups) != 1 {
		t.Fatalf("reuseport_groups %+v, want one group of python3 and socat", rec.ReusePortGroups)
	}
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("who with reuseport_groups does not match docs/schema.json: %v\n%s", err, raw)
	}
	g := rec.ReusePortGroups[0]
	if g.Addr != "127.0.0.1" || g.Sockets != 2 || g.Programs != 2 || !slices.Contains(g.PIDs, py.Process.Pid) || !slices.Contains(g.PIDs, sc.Process.Pid) {
		t.Errorf("group %+v: want 127.0.0.1, 2 sockets of 2 programs, pids %d and %d", g, py.Process.Pid, sc.Process.Pid)
	}
	res := bindwatch(t, "who", p+"/tcp", "--format", "text")
	if want := "SO_REUSEPORT group on 127.0.0.1:" + p + ": 2 sockets of 2 different programs"; !strings.Contains(res.stdout, want) {
		t.Errorf("who text lacks %q:\n%s", want, res.stdout)
	}
}

// The same program joining from another cgroup (another service,
// container or session) is flagged as unit; on UDP too, where bind() is
// holding.
func TestPortSharedOtherUnitUDP(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	cg := testenv.NewCgroup(t)
	var holder, joiner *exec.Cmd
	lines := runTraceUntil(t, func() {
		holder = startReusePort(t, exec.Command("python3", "-c", reusePortServer, p, "udp"))
		joiner = exec.Command("python3", "-c", reusePortServer, p, "udp")
		joiner.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.FD}
		startReusePort(t, joiner)
	}, func(lines [][]byte) bool { return len(portShared(t, lines, port)) > 0 }, "--port", p)
	recs := portShared(t, lines, port)
	if len(recs) != 1 {
		t.Fatalf("%d port_shared records, want 1:\n%s", len(recs), joinLines(lines))
	}
	r := recs[0]
	if r.Why != events.SharedUnit || r.Proto != "udp" || r.Syscall != "bind" || r.Joiner.PID != joiner.Process.Pid ||
		r.Holder.PID != holder.Process.Pid || r.Joiner.Cgroup != cg.Path || r.GroupSize != 2 {
		t.Errorf("port_shared %+v: want why unit, udp bind, joiner %d in %s, holder %d, group of 2", r, joiner.Process.Pid, cg.Path, holder.Process.Pid)
	}
}

// A port gets at most 8 port_shared records a minute, whatever the pairs:
// ten joins by new processes, each a different program from the one
// before, write 8; a join on another port afterwards (the kernel's ring
// keeps order) shows that the rest were not merely late.
func TestPortSharedPortBudget(t *testing.T) {
	testenv.RequireRoot(t)
	port, other := testenv.FreePort(t), testenv.FreePort(t)
	for other == port {
		other = testenv.FreePort(t)
	}
	p, o := strconv.Itoa(port), strconv.Itoa(other)
	scripts := []string{reusePortServer, reusePortServer + "# another program\n"}
	lines := runTraceUntil(t, func() {
		startReusePort(t, exec.Command("python3", "-c", scripts[0], p, "tcp"))
		for i := 1; i <= 10; i++ {
			startReusePort(t, exec.Command("python3", "-c", scripts[i%2], p, "tcp"))
		}
		startReusePort(t, exec.Command("python3", "-c", scripts[0], o, "tcp"))
		startReusePort(t, exec.Command("python3", "-c", scripts[1], o, "tcp"))
	}, func(lines [][]byte) bool { return len(portShared(t, lines, other)) > 0 }, "--port", p, "--port", o)
	if n := len(portShared(t, lines, port)); n != 8 {
		t.Errorf("%d port_shared records for 10 joins of port %d within a minute, want 8 (the port's budget):\n%s", n, port, joinLines(lines))
	}
}

// haproxy -sf is a hand-over: the new process binds its own reuseport
// listener, then tells the old one, which lets go. No port_shared record.
// Two python3 copies on another port, started after it, are the
// sentinel: their copy record comes after the haproxy join's grace.
func TestPortSharedNotHaproxyReload(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "haproxy -sf hands its port over", "haproxy", "python3")
	path, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal(err)
	}
	port, other := testenv.FreePort(t), testenv.FreePort(t)
	for other == port {
		other = testenv.FreePort(t)
	}
	p, o := strconv.Itoa(port), strconv.Itoa(other)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(cfg, []byte("defaults\n\tmode tcp\n\ttimeout connect 1s\n\ttimeout client 1s\n\ttimeout server 1s\n"+
		"frontend f\n\tbind 127.0.0.1:"+p+"\n\tdefault_backend b\nbackend b\n\tserver s 127.0.0.1:9\n"), 0o644)
	start := func(args ...string) *exec.Cmd {
		cmd := exec.Command(path, append([]string{"-db", "-f", cfg}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	var old, reload *exec.Cmd
	lines := runTraceUntil(t, func() {
		old = start()
		waitListening(t, port, 1)
		reload = start("-sf", strconv.Itoa(old.Process.Pid))
		if err := old.Wait(); err != nil {
			t.Logf("old haproxy: %v", err)
		}
		startReusePort(t, exec.Command("python3", "-c", reusePortServer, o, "tcp"))
		startReusePort(t, exec.Command("python3", "-c", reusePortServer, o, "tcp"))
	}, func(lines [][]byte) bool { return len(portShared(t, lines, other)) > 0 }, "--port", p, "--port", o)
	if recs := portShared(t, lines, port); len(recs) != 0 {
		t.Errorf("haproxy -sf got %d port_shared records, want none:\n%s", len(recs), joinLines(lines))
	}
	if syscall.Kill(reload.Process.Pid, 0) != nil {
		t.Errorf("the reloaded haproxy is not running")
	}
}

// waitListening waits until n sockets listen on 127.0.0.1:port.
func waitListening(t *testing.T, port, n int) {
	t.Helper()
	for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/net/tcp")
		want := fmt.Sprintf("0100007F:%04X 00000000:0000 0A", port)
		if strings.Count(string(b), want) >= n {
			return
		}
	}
	t.Fatalf("nothing listens on 127.0.0.1:%d", port)
}

// --pid keeps the port_shared records with a traced process on either
// side: a join outside the traced processes, before the traced holder's
// port is joined (the kernel's ring keeps order), is not written.
func TestPortSharedPidFilter(t *testing.T) {
	testenv.RequireRoot(t)
	port, other := testenv.FreePort(t), testenv.FreePort(t)
	for other == port {
		other = testenv.FreePort(t)
	}
	p, o := strconv.Itoa(port), strconv.Itoa(other)
	traced := startReusePort(t, exec.Command("python3", "-c", reusePortServer, p, "tcp"))
	startReusePort(t, exec.Command("python3", "-c", reusePortServer, o, "tcp"))
	lines := runTraceUntil(t, func() {
		testenv.StartHelper(t, "hold tcp 127.0.0.1 "+o+" reuseport")
		testenv.StartHelper(t, "hold tcp 127.0.0.1 "+p+" reuseport")
	}, func(lines [][]byte) bool { return len(portShared(t, lines, port)) > 0 },
		"--port", p, "--port", o, "--pid", strconv.Itoa(traced.Process.Pid))
	if n := len(portShared(t, lines, other)); n != 0 {
		t.Errorf("%d port_shared records of a port no traced process holds, want none:\n%s", n, joinLines(lines))
	}
}

// waitFile tells whether path exists within d.
func waitFile(path string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}
