package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
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

// realIncidentLog traces two ports and returns the JSON lines bindwatch
// wrote: on the first, three failures against a holder that stays (an
// incident still open at the end); on the second, three failures against
// a real server that is then sent SIGTERM, and the port taken again (a
// recovered incident, with its signal and release).
func realIncidentLog(t *testing.T) (lines [][]byte, ports [2]int) {
	t.Helper()
	ports[0] = testenv.FreePort(t)
	for ports[1] = testenv.FreePort(t); ports[1] == ports[0]; ports[1] = testenv.FreePort(t) {
	}
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	tr := startTracing(t, "--port", strconv.Itoa(ports[0]), "--port", strconv.Itoa(ports[1]), "--output", out)
	testenv.Hold(t, "tcp", "127.0.0.1", ports[0], testenv.Opts{})
	for range 3 {
		testenv.FailBind(t, "tcp", "127.0.0.1", ports[0], testenv.Opts{}, syscall.EADDRINUSE)
	}
	server := startServer(t, ports[1])
	for range 3 {
		testenv.FailBind(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{}, syscall.EADDRINUSE)
	}
	// The signal and the release belong to the incident once its first
	// failure is recorded (not after a fixed while: under load the
	// tracer may read it seconds later).
	waitRecords(t, out, "the second port's failure", func(recs []events.Record) bool { return len(ofType[events.Failure](recs, ports[1])) > 0 })
	server.Process.Signal(syscall.SIGTERM)
	server.Wait()
	testenv.Hold(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{})
	waitRecords(t, out, "the second port's recovery", func(recs []events.Record) bool { return len(ofType[events.Recovered](recs, ports[1])) > 0 })
	tr.stop(t)
	return readLines(out), ports
}

// startServer starts a real server listening on port and returns once it
// listens.
func startServer(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	server := exec.Command("python3", "-c", `import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(60)`, strconv.Itoa(port))
	out, _ := server.StdoutPipe()
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	bufio.NewReader(out).ReadString('\n')
	return server
}

func report(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bindwatchBin, append([]string{"report"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bindwatch report %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// report on a damaged log — garbage lines, a record of a newer schema
// version, a gzip-rotated older part and a truncated last line — finds the
// same incidents as on the clean log, and counts what it skipped.
func TestReportSurvivesDamagedLogs(t *testing.T) {
	lines, ports := realIncidentLog(t)
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.jsonl")
	os.WriteFile(clean, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644)
	want, stderr := report(t, "--format", "json", clean)
	if stderr != "" {
		t.Errorf("clean log: unexpected complaint %q", stderr)
	}
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var incidents []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(want), "\n") {
		var in map[string]any
		if err := json.Unmarshal([]byte(l), &in); err != nil {
			t.Fatalf("report line is not JSON: %v: %s", err, l)
		}
		if err := schema.Validate(any(in)); err != nil {
			t.Errorf("incident record does not match docs/schema.json: %v\n%s", err, l)
		}
		incidents = append(incidents, in)
	}
	if len(incidents) != 2 {
		t.Fatalf("clean log: %d incidents, want 2 (one per port):\n%s", len(incidents), want)
	}
	for i, in := range incidents {
		state := []string{"open", "recovered"}[i]
		if int(in["port"].(float64)) != ports[i] || in["attempts"].(float64) != 3 || in["state"] != state {
			t.Errorf("incident %d: port %v attempts %v state %v, want port %d, 3 attempts, %s", i, in["port"], in["attempts"], in["state"], ports[i], state)
		}
	}

	// The damaged copy: the first half rotated and compressed, garbage in
	// the second, and the last record cut in half.
	damaged := filepath.Join(dir, "bw.jsonl")
	half := len(lines) / 2
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for _, l := range lines[:half] {
		zw.Write(append(l, '\n'))
	}
	zw.Close()
	os.WriteFile(damaged+".1.gz", gz.Bytes(), 0o644)
	var b bytes.Buffer
	b.WriteString("not json at all\n{\"type\":\"bind_failure\"}\n\x00\x01garbage\n")
	for _, l := range lines[half:] {
		b.Write(append(l, '\n'))
		b.WriteString(`{"type":"bind_failure","version":2,"time":"2026-11-25T10:31:02Z"}` + "\n")
	}
	b.WriteString("{\"broken\": \n")
	last := lines[len(lines)-1] // the stop record, again, cut off
	b.Write(last[:len(last)/2])
	os.WriteFile(damaged, b.Bytes(), 0o644)

	got, stderr := report(t, "--format", "json", damaged)
	if got != want {
		t.Errorf("damaged log: incidents differ from the clean log's\nclean:\n%s\ndamaged:\n%s", want, got)
	}
	newer := len(lines) - half
	for _, s := range []string{"4 malformed lines", strconv.Itoa(newer) + " records of a newer schema version", "1 truncated file"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("report did not say %q: %q", s, stderr)
		}
	}
	// --since and --until select by the incident's window.
	if out, _ := report(t, "--format", "text", "--until", "2000-01-01", clean); !strings.HasPrefix(out, "no incident in ") {
		t.Errorf("--until 2000-01-01 kept incidents:\n%s", out)
	}
	if out, _ := report(t, "--format", "json", "--since", "1h", clean); out != want {
		t.Errorf("--since 1h dropped incidents:\n%s", out)
	}
	// Text mode reads the same log.
	text, _ := report(t, "--format", "text", "--port", strconv.Itoa(ports[1]), damaged)
	if strings.Count(text, "incident on tcp") != 1 || !strings.Contains(text, "3 failed attempts") || !strings.Contains(text, ":"+strconv.Itoa(ports[1])) {
		t.Errorf("text report for --port %d:\n%s", ports[1], text)
	}
}

// chromium runs Debian's headless chromium on a local page with no
// network and a fresh profile, and returns what it printed.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	testenv.Require(t, "chromium", "renders the HTML report in a real browser")
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.Command(bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// sections splits a dumped DOM into its incident sections.
func sections(dom string) []string {
	parts := strings.Split(dom, `<section class="incident"`)
	return parts[1:]
}

// The --html page, loaded in a real headless browser, holds one timeline
// per incident with a lane for the holder, the failing process and the
// kernel's view, and a mark per failure and per folded count.
func TestReportHTMLInBrowser(t *testing.T) {
	lines, ports := realIncidentLog(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "bw.jsonl")
	os.WriteFile(log, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644)
	page := filepath.Join(dir, "incidents.html")
	report(t, "--html", page, log)
	raw, _ := os.ReadFile(page)
	for _, banned := range []string{"http://", "https://", "<script", "<link", "@import", "url("} {
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, banned) && !strings.Contains(l, `xmlns="http://www.w3.org/2000/svg"`) {
				t.Errorf("the page is not self-contained: %q in %s", banned, l)
			}
		}
	}
	dom := string(chromium(t, "--dump-dom", "file://"+page))
	secs := sections(dom)
	if len(secs) != 2 {
		t.Fatalf("the browser's DOM holds %d incident sections, want 2:\n%s", len(secs), dom)
	}
	for i, s := range secs {
		if !strings.Contains(s, `data-port="`+strconv.Itoa(ports[i])+`"`) {
			t.Errorf("section %d is not about port %d", i, ports[i])
		}
		if n := strings.Count(s, `<svg class="timeline"`); n != 1 {
			t.Errorf("section %d: %d timelines, want 1", i, n)
		}
		for _, lane := range []string{"holder", "failing", "kernel"} {
			if !strings.Contains(s, `data-lane="`+lane+`"`) {
				t.Errorf("section %d: no %s lane", i, lane)
			}
		}
		// Three failures of one process within the fold window: the first
		// reported, the other two folded (one mark with its count), or
		// all three reported.
		failures, folded := strings.Count(s, `class="mark failure"`), 0
		for _, m := range strings.Split(s, `class="mark repeats"`)[1:] {
			_, rest, _ := strings.Cut(m, `data-count="`)
			n, _ := strconv.Atoi(rest[:strings.Index(rest, `"`)])
			folded += n
		}
		if failures < 1 || failures+folded != 3 {
			t.Errorf("section %d: %d failure marks + %d folded, want 3 attempts", i, failures, folded)
		}
		// The second incident's holder was sent SIGTERM, died of it, and
		// the port was taken again: a mark each, on the holder's lane
		// (signal, release) and the kernel's (recovery).
		want := map[string]int{"signal": 0, "released": 0, "recovered": 0}
		if i == 1 {
			want = map[string]int{"signal": 1, "released": 1, "recovered": 1}
		}
		for kind, n := range want {
			if got := strings.Count(s, `class="mark `+kind+`"`); got != n {
				t.Errorf("section %d: %d %s marks, want %d", i, got, kind, n)
			}
		}
	}
	shot := filepath.Join(dir, "shot.png")
	chromium(t, "--screenshot="+shot, "--window-size=1100,700", "file://"+page)
	if b, err := os.ReadFile(shot); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("no screenshot: %v", err)
	}
}

// report --html FILE in a shared directory replaces only a regular file of
// its own user: a planted symlink, hard link, FIFO or another user's file
// is refused (exit 1, one sentence), the target untouched, and nothing
// blocks on the FIFO.
func TestReportHTMLRefusesPlantedFiles(t *testing.T) {
	testenv.RequireRoot(t)
	shared := t.TempDir()
	os.Chmod(shared, 0o1777)
	log := filepath.Join(t.TempDir(), "empty.jsonl")
	os.WriteFile(log, nil, 0o644)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	for _, c := range []struct {
		name, want string
		plant      func(path string) error
	}{
		{"symlink", "symbolic link", func(p string) error { return os.Symlink(victim, p) }},
		{"hard link", "2 hard links", func(p string) error { return os.Link(victim, p) }},
		{"fifo", "not a regular file", func(p string) error { return unix.Mkfifo(p, 0o666) }},
		{"another user's file", "uid 65534 owns it", func(p string) error {
			if err := os.WriteFile(p, []byte("theirs\n"), 0o644); err != nil {
				return err
			}
			return os.Chown(p, 65534, 65534)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := filepath.Join(shared, strings.ReplaceAll(c.name, " ", "_")+".html")
			if err := c.plant(page); err != nil {
				t.Fatal(err)
			}
			var before []byte
			if c.name != "fifo" { // reading it would block
				before, _ = os.ReadFile(page)
			}
			cmd := exec.Command(bindwatchBin, "report", "--html", page, log)
			done := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
			code, stderr := run(t, cmd)
			done.Stop()
			if code != 1 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit 1 and one sentence saying %q", code, stderr, c.want)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Errorf("the link's target was written: %q", b)
			}
			if c.name == "another user's file" {
				if after, _ := os.ReadFile(page); !bytes.Equal(after, before) {
					t.Errorf("another user's file was written: %q", after)
				}
			}
		})
	}
	// A regular file of its own is replaced, whole.
	page := filepath.Join(shared, "own.html")
	os.WriteFile(page, bytes.Repeat([]byte("old page\n"), 10000), 0o644)
	report(t, "--html", page, log)
	if b, _ := os.ReadFile(page); !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) || bytes.Contains(b, []byte("old page")) {
		t.Errorf("own page not replaced whole: %.200q", b)
	}
}

// withHost rewrites the host of every record of a real log: what the logs
// of several nodes look like once merged.
func withHost(t *testing.T, lines [][]byte, host string) []byte {
	t.Helper()
	var out []byte
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatalf("not a JSON record: %v: %s", err, l)
		}
		if _, ok := rec["host"]; ok {
			rec["host"] = host
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(append(out, b...), '\n')
	}
	return out
}

// report on logs merged from several hosts keeps each host's incidents
// apart and names the incidents seen on several hosts — in text, JSON
// (spread records, valid against the schema) and HTML — with hostile host
// names escaped; a host with another incident on the same port (another
// holder program) is not counted among them.
func TestReportSpreadAcrossHosts(t *testing.T) {
	lines, ports := realIncidentLog(t)
	// node-d: the same port as the second incident, held by another
	// program: this test's process, which took it back in realIncidentLog,
	// instead of the python server.
	other := runTrace(t, func() {
		for range 2 {
			testenv.FailBind(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{}, syscall.EADDRINUSE)
		}
	}, "--port", strconv.Itoa(ports[1]))
	const evil = "<b>node-c\x1b[31m"
	var merged []byte
	for _, h := range []string{"node-a", "node-b", evil} {
		merged = append(merged, withHost(t, lines, h)...)
	}
	merged = append(merged, withHost(t, other, "node-d")...)
	log := filepath.Join(t.TempDir(), "merged.jsonl")
	if err := os.WriteFile(log, merged, 0o644); err != nil {
		t.Fatal(err)
	}

	// JSON: 2 incidents on each of 3 hosts + node-d's, and one spread per
	// port of the first three hosts.
	out, _ := report(t, "--format", "json", log)
	var jsonLines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		jsonLines = append(jsonLines, []byte(l))
	}
	if seen := schemaLines(t, jsonLines); seen["incident"] != 7 || seen["spread"] != 2 {
		t.Fatalf("record types %v, want 7 incident and 2 spread:\n%s", seen, out)
	}
	for _, l := range jsonLines {
		var s struct {
			Type  string
			Port  int
			Hosts []struct{ Host string }
		}
		json.Unmarshal(l, &s)
		if s.Type != "spread" {
			continue
		}
		var hosts []string
		for _, h := range s.Hosts {
			hosts = append(hosts, h.Host)
		}
		if got := strings.Join(hosts, ","); got != "node-a,node-b,"+evil {
			t.Errorf("spread of port %d on hosts %q, want node-a,node-b,%q (node-d had another incident)", s.Port, got, evil)
		}
	}

	// Text: the block, the hostile name escaped, node-d's incident apart.
	text, _ := report(t, "--format", "text", log)
	if strings.ContainsRune(text, 0x1b) {
		t.Errorf("text report holds a raw ESC:\n%q", text)
	}
	escaped := `<b>node-c\x1b[31m`
	for _, p := range ports {
		want := fmt.Sprintf("port %d/tcp, ", p)
		line := ""
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "  "+want) {
				line = l
			}
		}
		if !strings.Contains(line, ": on 3 hosts (node-a, node-b, "+escaped+"), first at ") {
			t.Errorf("no spread line for port %d in:\n%s", p, text)
		}
	}
	nodeD := false
	for _, l := range strings.Split(text, "\n") {
		nodeD = nodeD || strings.HasPrefix(l, fmt.Sprintf("incident on tcp 127.0.0.1:%d ", ports[1])) && strings.Contains(l, ", host node-d:")
	}
	// The summary of the 7 incidents first, then the spreads, then each.
	if !strings.HasPrefix(text, "7 incidents, each told below in this order:\n") || !strings.Contains(text, "\n\nsame incident on several hosts:\n") ||
		strings.Count(text, "\nincident on ") != 7 || !nodeD {
		t.Errorf("text report:\n%s", text)
	}

	// HTML: a short section, the name escaped by the rule, then by html/template.
	page := filepath.Join(t.TempDir(), "page.html")
	report(t, "--html", page, log)
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if strings.Count(html, `<li class="spread">`) != 2 || !strings.Contains(html, `on 3 hosts (node-a, node-b, &lt;b&gt;node-c\x1b[31m)`) ||
		strings.Contains(html, "<b>node-c") || strings.ContainsRune(html, 0x1b) {
		t.Errorf("html spreads section wrong:\n%s", html)
	}
}

// asNobody runs a shell script as uid 65534 (no groups), as an attacker
// sharing the machine would.
func asNobody(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as uid 65534: %s: %v\n%s", script, err, out)
	}
}

// In a shared directory (mode 1777), uid 65534 plants beside root's log a
// forged rotated part ("port 22 held by /home/alice/backdoor"), a FIFO and
// a symlink; root's own FIFO is there too. report reads the log and its
// real rotated part, refuses each planted one — naming it on standard
// error — and neither hangs nor reports the forgery.
func TestReportRefusesPlantedSiblings(t *testing.T) {
	lines, _ := realIncidentLog(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(t.TempDir(), "clean.jsonl")
	os.WriteFile(clean, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644)
	want, _ := report(t, "--format", "json", clean)

	log := filepath.Join(dir, "bw.jsonl")
	half := len(lines) / 2
	os.WriteFile(log+".1", append(bytes.Join(lines[:half], []byte("\n")), '\n'), 0o640)
	os.WriteFile(log, append(bytes.Join(lines[half:], []byte("\n")), '\n'), 0o640)
	if err := unix.Mkfifo(log+".2", 0o600); err != nil {
		t.Fatal(err)
	}
	forged := `{"type":"bind_failure","version":1,"time":"2026-11-25T10:31:02Z","host":"h","syscall":"bind","errno":"EADDRINUSE","errno_code":98,"proto":"tcp","family":"ipv4","addr":"0.0.0.0","port":22,"socket":{"reuseaddr":false,"reuseport":false,"freebind":false,"bound_dev":""},"process":{"pid":1234,"ppid":1,"uid":0,"comm":"sshd"},"holders":[{"source":"seen_live","proto":"tcp","state":"LISTEN","addr":"0.0.0.0","port":22,"uid":0,"processes":[{"pid":666,"ppid":1,"uid":0,"comm":"backdoor","exe":"/home/alice/backdoor"}]}]}`
	asNobody(t, dir, "printf '%s\\n' '"+forged+"' > bw.jsonl.9 && mkfifo bw.jsonl.8 && ln -s /etc/shadow bw.jsonl.7 && ln -s "+clean+" bw.jsonl.6")

	cmd := exec.Command(bindwatchBin, "report", "--format", "json", log)
	res := runBindwatchWithin(t, cmd, 20*time.Second)
	if res.code != 0 {
		t.Fatalf("report exited %d:\n%s", res.code, res)
	}
	if res.stdout != want {
		t.Errorf("incidents differ from the log's own:\nwant:\n%s\ngot:\n%s", want, res.stdout)
	}
	if strings.Contains(res.stdout, "backdoor") {
		t.Errorf("the forged part planted by uid 65534 was reported as fact:\n%s", res.stdout)
	}
	for _, refused := range []string{
		log + ".9: owned by uid 65534, not by the log's owner (uid 0) or root",
		log + ".8: not a regular file (a FIFO)",
		log + ".7: a symbolic link",
		log + ".6: a symbolic link",
		log + ".2: not a regular file (a FIFO)",
	} {
		if !strings.Contains(res.stderr, "bindwatch report: not reading "+refused) {
			t.Errorf("standard error does not say %q:\n%s", refused, res.stderr)
		}
	}
}

// runBindwatchWithin runs cmd, killing it (and failing the test) if it
// has not exited within d.
func runBindwatchWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) result {
	t.Helper()
	var stdout, stderr testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%q still running after %v (stdout %q, stderr %q)", cmd.Args, d, stdout.String(), stderr.String())
	}
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if exit, ok := err.(*exec.ExitError); ok {
		res.code = exit.ExitCode()
	}
	return res
}

// startAsNobody starts a testenv helper job as uid 65534 with args (its
// argv, which the job ignores) and returns its first line; it runs until
// the test ends.
func startAsNobody(t *testing.T, job string, args ...string) string {
	t.Helper()
	cmd := testenv.HelperAsUser(t, job, 65534)
	cmd.Args = append(cmd.Args, args...)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q as uid 65534: %v", job, err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	return strings.TrimSpace(line)
}

// uid 65534 holds a port and fails to bind it again, both processes with a
// 1.5 MB command line — the attack that made a 3 MB line report skipped
// as malformed, hiding the incident. The tracer writes no line over
// 1 MiB (the command lines shortened around "…", cmdline_truncated), and
// report tells the incident.
func TestReportReadsWhatTheTracerWrites(t *testing.T) {
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	var argv []string
	for i := range 12 {
		argv = append(argv, fmt.Sprintf("--arg%02d=%s", i, strings.Repeat("x", 125_000)))
	}
	lines := runTraceUntil(t, func() {
		if l := startAsNobody(t, "hold tcp 127.0.0.1 "+p, argv...); !strings.HasPrefix(l, "ready ") {
			t.Fatalf("holder said %q", l)
		}
		if l := startAsNobody(t, "trybind tcp 127.0.0.1 "+p, argv...); !strings.HasPrefix(l, fmt.Sprintf("errno %d ", syscall.EADDRINUSE)) {
			t.Fatalf("failing process said %q, want EADDRINUSE", l)
		}
	}, func(lines [][]byte) bool {
		return bytes.Contains(bytes.Join(lines, nil), []byte(`"type":"bind_failure"`))
	}, "--port", p, "--format", "json")
	var failure map[string]any
	for _, l := range lines {
		if len(l) > 1<<20 {
			t.Errorf("a %d-byte line, over 1 MiB: %.200s", len(l), l)
		}
		if bytes.Contains(l, []byte(`"type":"bind_failure"`)) {
			json.Unmarshal(l, &failure)
		}
	}
	if failure == nil {
		t.Fatal("no bind_failure record")
	}
	proc := failure["process"].(map[string]any)
	if proc["uid"] != float64(65534) || proc["cmdline_truncated"] != true || len(proc["cmdline"].([]any)) < 2 {
		t.Errorf("failing process %.300v, want uid 65534 with its command line shortened (cmdline_truncated)", proc)
	}
	log := filepath.Join(t.TempDir(), "bw.jsonl")
	os.WriteFile(log, append(bytes.Join(lines, []byte("\n")), '\n'), 0o640)
	out, stderr := report(t, "--format", "json", log)
	var in map[string]any
	if err := json.Unmarshal([]byte(out), &in); err != nil || in["port"] != float64(port) || in["attempts"] != float64(1) {
		t.Errorf("report: %v; want the incident on port %d with 1 attempt:\n%.500s\nstderr: %s", err, port, out, stderr)
	}
	if stderr != "" {
		t.Errorf("report skipped something: %s", stderr)
	}
}

// countType counts the records of type typ in a JSON-lines file.
func countType(path, typ string) int {
	n := 0
	for _, l := range readLines(path) {
		if bytes.Contains(l, []byte(`"type":"`+typ+`"`)) {
			n++
		}
	}
	return n
}

// uid 65534's holder ignores SIGHUP, and uid 65534 floods it with SIGHUPs
// during root's outage on its port; then root's SIGTERM ends it. The
// report folds the flood into one counted line, keeps root's SIGTERM, and
// the page stays small (issue 19: 200,000 signals made a 78 MB page).
func TestReportFoldsASignalFlood(t *testing.T) {
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	out := filepath.Join(t.TempDir(), "bw.jsonl")
	tr := startTracing(t, "--port", p, "--format", "json", "--output", out)
	holder := testenv.StartHelperAsUser(t, "deafhold tcp 127.0.0.1 "+p, 65534)
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	for deadline := time.Now().Add(testenv.StartTimeout); countType(out, "bind_failure") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no bind_failure within 3m: %s", tr.stderr.String())
		}
	}
	const flood = 200
	if b, err := testenv.HelperAsUser(t, fmt.Sprintf("sighup %d %d", holder.PID, flood), 65534).Output(); err != nil || string(b) != fmt.Sprintf("sent %d\n", flood) {
		t.Fatalf("flood: %v %q", err, b)
	}
	if err := syscall.Kill(holder.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); countType(out, "released") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no released record within 60s (%d signal records): %s", countType(out, "signal"), tr.stderr.String())
		}
	}
	tr.stop(t)
	// The SIGHUPs the tracer wrote: signal records, and the counts of the
	// signal_repeats records it folded the flood's excess into.
	hups := 0
	for _, l := range readLines(out) {
		var r struct {
			Type, Signal string
			Count        int
		}
		if json.Unmarshal(l, &r) != nil || r.Signal != "SIGHUP" {
			continue
		}
		switch r.Type {
		case events.TypeSignal:
			hups++
		case events.TypeSignalRepeats:
			hups += r.Count
		}
	}
	t.Logf("%d SIGHUPs recorded", hups)
	if hups < 3 {
		t.Fatalf("%d SIGHUPs recorded: the flood was not seen, nothing to fold", hups)
	}

	page := filepath.Join(t.TempDir(), "page.html")
	text, stderr := report(t, "--format", "text", "--html", page, out)
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "  signal ") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	// The first SIGHUP, the rest folded, root's SIGTERM; then the Go
	// runtime's own SIGTERM to itself, raised again to die of it.
	folded := fmt.Sprintf("%d more SIGHUP to pid %d (helper) from helper uid 65534", hups-1, holder.PID)
	rootTerm := fmt.Sprintf("SIGTERM to pid %d (helper) from pid %d ", holder.PID, os.Getpid())
	if len(lines) < 3 || len(lines) > 5 || !strings.Contains(lines[0], "SIGHUP") || !strings.Contains(lines[1], folded) ||
		!strings.Contains(lines[2], rootTerm) || !strings.Contains(lines[2], "uid 0: delivered") {
		t.Errorf("signal lines of the report:\n%s\nwant the first SIGHUP, %q… folded, and %q… uid 0\nstderr: %s", strings.Join(lines, "\n"), folded, rootTerm, stderr)
	}
	if st, err := os.Stat(page); err != nil || st.Size() > 200<<10 {
		t.Errorf("the page: %v, %d bytes; want under 200 KiB", err, st.Size())
	}
}
