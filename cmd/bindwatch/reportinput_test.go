package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// reportRun runs `bindwatch report ARGS` with stdin (nil: an empty pipe)
// and returns its exit status, standard output and standard error.
func reportRun(t *testing.T, stdin *os.File, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bindwatchBin, append([]string{"report"}, args...)...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	code, stderr := run(t, cmd)
	if !timer.Stop() {
		t.Errorf("bindwatch report %v still running after 20s: it waited for input", args)
	}
	return code, stdout.String(), stderr
}

// Issue 20, report input: report never waits silently on a terminal,
// never reports "no incident" (exit 0) on something that is no JSON log —
// bindwatch's own text output included — says a missing file once, and
// with --html keeps standard output for what --format asks.
func TestReportInput(t *testing.T) {
	dir := t.TempDir()

	t.Run("a terminal on standard input", func(t *testing.T) {
		_, term := openPTY(t)
		code, stdout, stderr := reportRun(t, term)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "report reads JSON lines from standard input; give a file or pipe a log") {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one sentence", code, stdout, stderr)
		}
		checkUsageError(t, []string{"report"}, stderr)
	})

	t.Run("bindwatch's text output", func(t *testing.T) {
		testenv.RequireRoot(t)
		port := testenv.FreePort(t)
		text := filepath.Join(dir, "trace.txt")
		tr := startTracing(t, "--format", "text", "--output", text, "--port", strconv.Itoa(port))
		testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(text); bytes.Contains(b, []byte(" EADDRINUSE bind tcp 127.0.0.1:"+strconv.Itoa(port))) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no failure line in the text output within 3m")
			}
		}
		tr.stop(t)
		b, _ := os.ReadFile(text)
		code, stdout, stderr := reportRun(t, nil, text)
		if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 ||
			!strings.Contains(stderr, "this is bindwatch's text output, which report cannot read: record with `--format json` or `--output FILE`") {
			t.Errorf("report on text output:\n%s\nexit %d, stdout %q, stderr %q; want exit 1 and one sentence saying what it is", b, code, stdout, stderr)
		}
		// The same through a pipe.
		f, _ := os.Open(text)
		defer f.Close()
		if code, _, stderr := reportRun(t, f); code != 1 || !strings.Contains(stderr, "report: standard input: this is bindwatch's text output") {
			t.Errorf("report < text output: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("not a log", func(t *testing.T) {
		for _, c := range []struct{ name, content, want string }{
			{"passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", "this is not a bindwatch log"},
			{"other.json", `{"level":"info","msg":"listening"}` + "\n", "this is JSON, but no bindwatch record"},
		} {
			path := filepath.Join(dir, c.name)
			os.WriteFile(path, []byte(c.content), 0o644)
			code, stdout, stderr := reportRun(t, nil, path)
			if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "report: "+path+": "+c.want) {
				t.Errorf("report %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.name, code, stdout, stderr, c.want)
			}
		}
		// A log with records but no incident is no error.
		path := filepath.Join(dir, "quiet.jsonl")
		os.WriteFile(path, []byte(`{"type":"who","version":1,"port":80,"proto":"tcp","held":false,"holders":[],"sockets":0,"netns":[1]}`+"\n"), 0o644)
		if code, _, stderr := reportRun(t, nil, path); code != 0 || stderr != "" {
			t.Errorf("report on a log without incidents: exit %d, stderr %q; want exit 0", code, stderr)
		}
	})

	t.Run("a missing file", func(t *testing.T) {
		path := filepath.Join(dir, "nonexistent.jsonl")
		code, stdout, stderr := reportRun(t, nil, path)
		if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, path+": no such file") {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and one message", code, stdout, stderr)
		}
	})

	t.Run("--html", func(t *testing.T) {
		lines, _ := realIncidentLog(t)
		log := filepath.Join(dir, "incidents.jsonl")
		os.WriteFile(log, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644)
		page := filepath.Join(dir, "page.html")
		code, stdout, stderr := reportRun(t, nil, "--html", page, log)
		if b, _ := os.ReadFile(page); code != 0 || stdout != "" || !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("report --html (stdout not a terminal): exit %d, stdout %q, stderr %q, page %d bytes; want the page and nothing on stdout", code, stdout, stderr, len(b))
		}
		code, stdout, _ = reportRun(t, nil, "--html", page, "--format", "json", log)
		if code != 0 || strings.Count(stdout, `"type":"incident"`) != 2 {
			t.Errorf("report --html --format json: exit %d, stdout %q; want the two incidents", code, stdout)
		}
	})
}
