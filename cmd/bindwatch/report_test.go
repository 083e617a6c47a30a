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

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
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
	lines = runTrace(t, func() {
		testenv.Hold(t, "tcp", "127.0.0.1", ports[0], testenv.Opts{})
		for range 3 {
			testenv.FailBind(t, "tcp", "127.0.0.1", ports[0], testenv.Opts{}, syscall.EADDRINUSE)
		}
		server := startServer(t, ports[1])
		for range 3 {
			testenv.FailBind(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{}, syscall.EADDRINUSE)
		}
		time.Sleep(300 * time.Millisecond) // the failures open the incident
		server.Process.Signal(syscall.SIGTERM)
		server.Wait()
		testenv.Hold(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{})
	}, "--port", strconv.Itoa(ports[0]), "--port", strconv.Itoa(ports[1]))
	return lines, ports
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
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (the project's setup, .ci/run, installs it)")
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
