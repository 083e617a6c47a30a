package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// secrets are in hostileArgv; none may appear in any output.
var secrets = []string{"hunter2", "s3cretpw", "tok3n-abc", "k3y-value", "tailsecret1", "s3cret-tok"}

// hostileArgv is a command line as hostile as processes make them:
// secrets in every form redaction knows, terminal escapes, invalid UTF-8,
// and ~100 KB of arguments with a secret at the very end.
func hostileArgv() []string {
	argv := []string{"\x1b[31mred\x1b[0m\x07\u009b2J", "bad\xff\xfeutf8", "--password", "hunter2", "postgres://user:s3cretpw@db/app",
		"TOKEN=tok3n-abc", "--api-key=k3y-value"}
	for i := 0; i < 100; i++ {
		argv = append(argv, fmt.Sprintf("/opt/lib/filler-%03d-%s.jar", i, strings.Repeat("x", 1000)))
	}
	return append(argv, "--db-password", "tailsecret1", "com.example.Main")
}

// checkNoSecret fails if out holds any secret, or a raw terminal control
// character from hostileArgv (text escapes them, JSON encodes them).
func checkNoSecret(t *testing.T, what, out string) {
	t.Helper()
	if i := strings.IndexAny(out, "\x1b\x07\u009b"); i >= 0 {
		t.Errorf("%s: a raw control character from a command line: …%q…", what, out[max(0, i-80):min(len(out), i+80)])
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			i := strings.Index(out, s)
			t.Errorf("%s: secret %q survived redaction: …%s…", what, s, out[max(0, i-80):min(len(out), i+80)])
		}
	}
}

// checkRedactedJSON fails unless some process in the JSON lines of out
// says cmdline_redacted, and none holds a secret.
func checkRedactedJSON(t *testing.T, what, out string) {
	t.Helper()
	checkNoSecret(t, what, out)
	redacted := 0
	for line := range strings.Lines(out) {
		var doc any
		if err := json.Unmarshal([]byte(line), &doc); err != nil {
			t.Errorf("%s: not JSON: %v: %.200s", what, err, line)
			continue
		}
		walkJSON(doc, func(m map[string]any) {
			if m["cmdline_redacted"] == true {
				redacted++
			}
		})
		// JSON records (not ECS documents) are as docs/schema.json says,
		// cmdline_redacted and hostile bytes included.
		if _, ecs := doc.(map[string]any)["ecs"]; !ecs {
			if err := recordSchema().Validate(doc); err != nil {
				t.Errorf("%s: a line does not match docs/schema.json: %v\n%.1000s", what, err, line)
			}
		}
	}
	if redacted == 0 {
		t.Errorf("%s: no process says cmdline_redacted:\n%.5000s", what, out)
	}
}

// recordSchema is docs/schema.json, loaded once.
var recordSchema = sync.OnceValue(func() *testenv.Schema {
	s, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		panic(err)
	}
	return s
})

func walkJSON(v any, visit func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		visit(v)
		for _, e := range v {
			walkJSON(e, visit)
		}
	case []any:
		for _, e := range v {
			walkJSON(e, visit)
		}
	}
}

// A holder and a failing process whose command lines hold secrets, through
// every command and format: no secret survives.
func TestNoSecretSurvives(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	testenv.StartHelperArgs(t, "hold tcp 127.0.0.1 "+p, hostileArgv()...)
	fail := func() {
		cmd := testenv.Helper("bind tcp 127.0.0.1 " + p)
		cmd.Args = append(cmd.Args, hostileArgv()...)
		if err := cmd.Run(); cmd.ProcessState.ExitCode() != int(syscall.EADDRINUSE) {
			t.Errorf("failing helper: %v, want exit %d (EADDRINUSE)", err, syscall.EADDRINUSE)
		}
	}

	for _, format := range []string{"json", "text", "ecs"} {
		t.Run("trace "+format, func(t *testing.T) {
			lines := runTrace(t, fail, "--port", p, "--format", format)
			var out strings.Builder
			for _, l := range lines {
				out.Write(l)
				out.WriteByte('\n')
			}
			if format != "text" {
				checkRedactedJSON(t, "trace", out.String())
			} else {
				checkNoSecret(t, "trace", out.String())
			}
		})
		for _, args := range [][]string{{"who", p + "/tcp"}, {"free", p + "/tcp"}, {"wait-free", p + "/tcp", "--timeout", "0"}} {
			t.Run(args[0]+" "+format, func(t *testing.T) {
				res := bindwatch(t, append(args, "--format", format)...)
				checkNoSecret(t, args[0]+" stderr", res.stderr)
				if format != "text" {
					checkRedactedJSON(t, args[0], res.stdout)
				} else {
					checkNoSecret(t, args[0], res.stdout+res.stderr)
				}
			})
		}
		t.Run("run "+format, func(t *testing.T) {
			helper := testenv.Helper("bind tcp 127.0.0.1 " + p)
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			cmd := exec.Command(bindwatchBin, append([]string{"run", "--backend", testenv.Backend(), "--port", p,
				"--format", format, "--output", out, "--"}, append(helper.Args, hostileArgv()...)...)...)
			cmd.Env = helper.Env
			stderr, _ := cmd.CombinedOutput() // the summary, and CMD's own messages
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			checkNoSecret(t, "run summary", string(stderr))
			if !strings.Contains(string(stderr), "EADDRINUSE") {
				t.Errorf("run's summary names no failure:\n%s", stderr)
			}
			if format != "text" {
				checkRedactedJSON(t, "run", string(b))
			} else {
				checkNoSecret(t, "run", string(b))
			}
		})
	}

	// The syslog output carries the same records: a collector on a unix
	// datagram socket of the test's own reads what bindwatch sends.
	for _, format := range []string{"json", "ecs"} {
		t.Run("syslog "+format, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got := make(chan string, 1)
			conn.SetReadDeadline(time.Now().Add(time.Minute))
			go func() {
				var all strings.Builder
				buf := make([]byte, 1<<20)
				for {
					n, err := conn.Read(buf)
					if err != nil {
						got <- all.String()
						return
					}
					all.Write(buf[:n])
					all.WriteByte('\n')
				}
			}()
			runTrace(t, fail, "--port", p, "--format", format, "--syslog", "unix://"+path)
			// Everything was sent before bindwatch exited; the reader
			// drains what is queued, then stops. (A deadline already
			// past would drop what it had not read yet.)
			conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			msgs := <-got
			if !strings.Contains(msgs, "bind_failure") {
				t.Fatalf("the collector got no bind_failure:\n%.2000s", msgs)
			}
			checkNoSecret(t, "syslog", msgs)
			if !strings.Contains(msgs, `"cmdline_redacted":true`) {
				t.Errorf("syslog: no process says cmdline_redacted:\n%.2000s", msgs)
			}
		})
	}

	// A log written with --no-redact holds the secrets; report does not
	// repeat them.
	t.Run("report", func(t *testing.T) {
		lines := runTrace(t, fail, "--port", p, "--format", "json", "--no-redact")
		log := filepath.Join(t.TempDir(), "bindwatch.jsonl")
		var b strings.Builder
		for _, l := range lines {
			b.Write(l)
			b.WriteByte('\n')
		}
		if !strings.Contains(b.String(), "hunter2") {
			t.Fatalf("--no-redact log holds no secret:\n%.1000s", b.String())
		}
		if err := os.WriteFile(log, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"text", "json", "ecs"} {
			res := bindwatch(t, "report", log, "--format", format)
			if !strings.Contains(res.stdout, p) {
				t.Errorf("report --format %s: no incident on port %s; %s", format, p, res)
			}
			checkNoSecret(t, "report --format "+format, res.stdout+res.stderr)
		}
	})

	t.Run("no-redact", func(t *testing.T) {
		res := bindwatch(t, "who", p+"/tcp", "--format", "json", "--no-redact")
		if !strings.Contains(res.stdout, "hunter2") || strings.Contains(res.stdout, "cmdline_redacted") {
			t.Errorf("--no-redact still redacted:\n%.2000s", res.stdout)
		}
	})
	t.Run("extra pattern", func(t *testing.T) {
		res := bindwatch(t, "who", p+"/tcp", "--format", "json", "--redact", `filler-0(4)2`)
		if strings.Contains(res.stdout, "filler-042") || !strings.Contains(res.stdout, "filler-0***2") {
			t.Errorf("--redact pattern not applied:\n%.300s", res.stdout)
		}
	})
}

// A failing process with a 10 KB Java-like command line that is still
// running when bindwatch resolves the failure is reported with its whole
// command line, read from /proc: cmdline_truncated absent.
func TestLongCommandLineCompletedFromProc(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	classpath := strings.Repeat("/opt/app/lib/some-library-1.2.3.jar:", 280)
	argv := []string{"-cp", classpath, "com.example.Main", "--server.port=8080"}
	lines := runTrace(t, func() {
		testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
		// trybind reports its errno and stays until the test ends.
		h := testenv.StartHelperArgs(t, "trybind tcp 127.0.0.1 "+p, argv...)
		if h.Line[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
			t.Fatalf("helper said %q, want errno %d", h.Line, syscall.EADDRINUSE)
		}
	}, "--port", p, "--format", "json")
	found := false
	for _, l := range lines {
		var f struct {
			Type    string
			Process struct {
				Cmdline          []string
				CmdlineTruncated bool `json:"cmdline_truncated"`
			}
		}
		if json.Unmarshal(l, &f) != nil || f.Type != "bind_failure" {
			continue
		}
		found = true
		want := append([]string{"-test.run=^$"}, argv...)
		if got := f.Process.Cmdline; len(got) != len(want)+1 || !slices.Equal(got[1:], want) || f.Process.CmdlineTruncated {
			t.Errorf("cmdline %.300q (truncated %v), want the whole command line", got, f.Process.CmdlineTruncated)
		}
	}
	if !found {
		t.Fatalf("no bind_failure among %d lines", len(lines))
	}
}
