package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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

// runTrace starts `bindwatch ARGS...` writing JSON to a file, waits for its
// ready file, runs provoke, then stops it with SIGINT and returns the lines.
// It gives bindwatch 300 ms to write what provoke caused: on SIGINT it
// stops promptly, counting what it had not read yet (the stop record's
// unread) rather than writing it. Callers that know what to expect should
// use runTraceUntil.
func runTrace(t *testing.T, provoke func(), args ...string) [][]byte {
	t.Helper()
	return runTraceUntil(t, provoke, nil, args...)
}

// runTraceUntil is runTrace that, instead of 300 ms, waits (up to
// recordsTimeout) until the lines written so far satisfy done.
func runTraceUntil(t *testing.T, provoke func(), done func(lines [][]byte) bool, args ...string) [][]byte {
	t.Helper()
	return runTraceOut(t, func(string) { provoke() }, done, args...)
}

// runTraceOut is runTraceUntil whose provoke is told the --output file,
// to wait for what the trace wrote so far.
func runTraceOut(t *testing.T, provoke func(out string), done func(lines [][]byte) bool, args ...string) [][]byte {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out.jsonl")
	args = append(args, "--backend", testenv.Backend(), "--ready-file", ready, "--output", out)
	cmd := exec.Command(bindwatchBin, args...)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	provoke(out)
	if done == nil {
		time.Sleep(300 * time.Millisecond)
	}
	for deadline := time.Now().Add(recordsTimeout); done != nil && !done(readLines(out)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("bindwatch did not write what was expected within %v; so far:\n%s", recordsTimeout, bytes.Join(readLines(out), []byte("\n")))
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bindwatch exited with %v after SIGINT: %s", err, stderr.String())
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("--output file mode %v (%v), want 0640", st.Mode().Perm(), err)
	}
	return readLines(out)
}

// readLines returns the lines of a file written so far.
func readLines(path string) [][]byte {
	b, _ := os.ReadFile(path)
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20) // a record with a 100 KB command line is one line
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	return lines
}

// The JSON output of the real binary, driven as a user would, matches the
// schema documented in docs/schema.json — every line, every field.
func TestJSONOutputMatchesSchema(t *testing.T) {
	port := testenv.FreePort(t)
	threeFailures := func(lines [][]byte) bool {
		n := 0
		for _, l := range lines {
			if bytes.Contains(l, []byte(`"type":"bind_failure"`)) {
				n++
			}
		}
		return n == 3
	}
	lines := runTraceUntil(t, func() {
		testenv.Hold(t, "tcp", "::", port, testenv.Opts{})
		testenv.FailBind(t, "tcp", "::", port, testenv.Opts{}, syscall.EADDRINUSE)
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		testenv.FailBind(t, "udp", "203.0.113.1", port, testenv.Opts{}, syscall.EADDRNOTAVAIL)
	}, threeFailures, "--port", strconv.Itoa(port), "--fold", "0")

	seen := schemaLines(t, lines)
	if seen["start"] != 1 || seen["bind_failure"] != 3 || seen["stop"] != 1 {
		t.Errorf("record types %v, want 1 start, 3 bind_failure, 1 stop", seen)
	}
}

// The schema test must be able to fail: a record with an undocumented
// field, or a missing one, is rejected.
func TestSchemaRejectsDrift(t *testing.T) {
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	good := `{"type":"lost","version":1,"time":"2026-11-25T10:31:02.113000001Z","host":"h","count":3}`
	for _, bad := range []string{
		`{"type":"lost","version":1,"time":"2026-11-25T10:31:02Z","host":"h","count":3,"extra":1}`,
		`{"type":"lost","version":1,"time":"2026-11-25T10:31:02Z","host":"h"}`,
		`{"type":"lost","version":2,"time":"2026-11-25T10:31:02Z","host":"h","count":3}`,
		`{"type":"lost","version":1,"time":"yesterday","host":"h","count":3}`,
	} {
		var doc any
		if err := json.Unmarshal([]byte(bad), &doc); err != nil {
			t.Fatalf("test record is not JSON: %v: %s", err, bad)
		}
		if schema.Validate(doc) == nil {
			t.Errorf("schema accepted %s", bad)
		}
	}
	var doc any
	if err := json.Unmarshal([]byte(good), &doc); err != nil {
		t.Fatalf("test record is not JSON: %v: %s", err, good)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("schema rejected %s: %v", good, err)
	}
}

// docs/schema.json is a valid 2020-12 schema: LoadSchema checks it against
// the 2020-12 metaschema, and refuses one that is not.
func TestSchemaIsDraft2020(t *testing.T) {
	b, err := os.ReadFile("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"$schema": "https://json-schema.org/draft/2020-12/schema"`) {
		t.Errorf("docs/schema.json does not declare draft 2020-12")
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"record","required":"type"}`), 0o644)
	if _, err := testenv.LoadSchema(bad); err == nil {
		t.Errorf("a schema with type \"record\" and a string for required was accepted")
	}
}

// Every cause the diagnosis can name is in the schema's enum and has a
// row in docs/causes.md, and the schema names no other.
func TestCausesDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs struct {
			Cause struct {
				Enum []string `json:"enum"`
			} `json:"cause"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(schema.Defs.Cause.Enum, events.Causes) {
		t.Errorf("docs/schema.json causes %v\nevents.Causes %v", schema.Defs.Cause.Enum, events.Causes)
	}
	table, err := os.ReadFile("../../docs/causes.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range events.Causes {
		if !bytes.Contains(table, []byte("\n| `"+c+"` |")) {
			t.Errorf("docs/causes.md has no row for %s", c)
		}
	}
}

// The incident records of the real binary — a signal to the holder, its
// release, the recovery — match the schema too.
func TestIncidentRecordsMatchSchema(t *testing.T) {
	port := testenv.FreePort(t)
	lines := runTrace(t, func() {
		holder := exec.Command("python3", "-c", `import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(60)`, strconv.Itoa(port))
		out, _ := holder.StdoutPipe()
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer holder.Process.Kill()
		bufio.NewReader(out).ReadString('\n')
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		time.Sleep(300 * time.Millisecond) // the failure opens the incident
		holder.Process.Signal(syscall.SIGTERM)
		holder.Wait()
		testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	}, "--port", strconv.Itoa(port), "--fold", "0")

	seen := schemaLines(t, lines)
	if seen["signal"] != 1 || seen["released"] != 1 || seen["recovered"] != 1 {
		t.Errorf("record types %v, want 1 signal, 1 released, 1 recovered", seen)
	}
}

// schemaLines checks lines of the real binary's JSON output against
// docs/schema.json — every record but the 101st and later bind_failure of
// a storm, which are alike — and counts them by type.
func schemaLines(t *testing.T, lines [][]byte) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, line := range lines {
		var doc map[string]any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("not a JSON object: %v: %s", err, line)
		}
		typ, _ := doc["type"].(string)
		if seen[typ]++; typ == events.TypeFailure && seen[typ] > 100 {
			continue
		}
		if err := recordSchema().Validate(any(doc)); err != nil {
			t.Errorf("line does not match docs/schema.json: %v\n%.2000s", err, line)
		}
	}
	return seen
}

// The records that count what was not reported one by one — repeats
// (folded in the kernel) and lost (neither reported nor folded) — of the
// real binary match the schema too.
func TestFoldAndLossRecordsMatchSchema(t *testing.T) {
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	storm := func() {
		if err := testenv.Helper(fmt.Sprintf("storm tcp 127.0.0.1 %d 20000", port)).Run(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("repeats", func(t *testing.T) {
		seen := schemaLines(t, runTrace(t, storm, "--port", p, "--fold", "10s"))
		if seen["repeats"] == 0 || seen["stop"] != 1 {
			t.Errorf("record types %v: want repeats of the storm, and a stop", seen)
		}
	})
	t.Run("lost", func(t *testing.T) {
		// A ring buffer of one page and nothing folded.
		seen := schemaLines(t, runTrace(t, storm, "--port", p, "--fold", "0", "--ring-size", "4096"))
		if seen["lost"] == 0 || seen["stop"] != 1 {
			t.Errorf("record types %v: want lost records after a storm into a 4 KiB ring buffer, and a stop", seen)
		}
	})
}

// A repeats record's first and last bound when its folded failures
// happened: every failure the real binary folded lies within the span of
// a repeats record, each span lies within the trace and is no wider than
// two fold table generations (ticks), and its records match the schema.
func TestRepeatsSpanCoversFoldedFailures(t *testing.T) {
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	type attempt struct{ before, after time.Time }
	var attempts []attempt
	const n, every = 16, 150 * time.Millisecond // 2.4 s: three ticks of the 1 s fold window
	var began time.Time
	lines := runTrace(t, func() {
		// One socket: the kernel folds one socket's repeated failures.
		fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		began = time.Now()
		for i := range n {
			time.Sleep(time.Until(began.Add(time.Duration(i) * every)))
			a := attempt{before: time.Now()}
			if err := testenv.Bind(fd, "127.0.0.1", port); err != syscall.EADDRINUSE {
				t.Fatalf("bind %d: %v, want EADDRINUSE", i, err)
			}
			a.after = time.Now()
			attempts = append(attempts, a)
		}
	}, "--port", strconv.Itoa(port), "--fold", "1s")
	seen := schemaLines(t, lines)
	type span struct{ first, last time.Time }
	var reported []time.Time
	var spans []span
	var folded uint64
	var started time.Time // the start record's: the fold table is written from then on
	for _, l := range lines {
		var r struct {
			Type              string
			Time, First, Last time.Time
			Count             uint64
		}
		json.Unmarshal(l, &r)
		switch r.Type {
		case "start":
			started = r.Time
		case "bind_failure":
			reported = append(reported, r.Time)
		case "repeats":
			folded += r.Count
			spans = append(spans, span{r.First, r.Last})
			if r.Last.Before(r.First) || r.First.Before(started.Add(-time.Second)) || r.Last.Sub(r.First) > 2*time.Second+500*time.Millisecond {
				t.Errorf("repeats span %s → %s: want first <= last, within the trace (started %s), at most two 1 s ticks wide", r.First, r.Last, started)
			}
		}
	}
	if seen["bind_failure"]+int(folded) != n || folded == 0 {
		t.Fatalf("%d failures reported and %d folded, want %d in all, some folded:\n%s", seen["bind_failure"], folded, n, bytes.Join(lines, []byte("\n")))
	}
	// The attempts not reported one by one are each within a span.
	const slack = 2 * time.Millisecond // the boot clock's conversion to wall time
	for i, a := range attempts {
		isReported := false
		for _, r := range reported {
			isReported = isReported || (!r.Before(a.before.Add(-slack)) && !r.After(a.after.Add(slack)))
		}
		if isReported {
			continue
		}
		within := false
		for _, s := range spans {
			within = within || (!s.first.After(a.after.Add(slack)) && !s.last.Before(a.before.Add(-slack)))
		}
		if !within {
			t.Errorf("folded attempt %d at +%s is in no repeats span: %v", i, a.before.Sub(began), spans)
		}
	}
}

// The start record says the filters in force — ports, pids, comm,
// netns, errnos — the backend, and whether holders are recorded, so a
// SIEM knows what a log with no failure covers; the text form says them
// too. Without filters, the record says none.
func TestStartRecordSaysItsFilters(t *testing.T) {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var netns uint32
	fmt.Sscanf(ns, "net:[%d]", &netns)
	start := func(lines [][]byte) map[string]any {
		for _, l := range lines {
			var r map[string]any
			json.Unmarshal(l, &r)
			if r["type"] == "start" {
				schemaLines(t, [][]byte{l})
				return r
			}
		}
		t.Fatalf("no start record in %s", bytes.Join(lines, []byte("\n")))
		return nil
	}
	pid := strconv.Itoa(os.Getpid())
	r := start(runTrace(t, func() {}, "--port", "8080", "--port", "9000-9100", "--pid", pid, "--comm", "nginx",
		"--netns", strconv.Itoa(os.Getpid()), "--errno", "EADDRINUSE", "--errno", "EACCES", "--no-holders"))
	got, _ := json.Marshal(r["filters"])
	want := fmt.Sprintf(`{"comm":"nginx","errnos":["EADDRINUSE","EACCES"],"netns":%d,"pids":[%s],"ports":["8080","9000-9100"]}`, netns, pid)
	if backend, _ := r["backend"].(string); string(got) != want || r["holders_recorded"] != false || backend == "" {
		t.Errorf("start record: filters %s, holders_recorded %v, backend %v; want filters %s, holders not recorded", got, r["holders_recorded"], r["backend"], want)
	}
	r = start(runTrace(t, func() {}))
	if got, _ := json.Marshal(r["filters"]); string(got) != "{}" || r["holders_recorded"] != true {
		t.Errorf("start record without filters: filters %s, holders_recorded %v; want {} and true", got, r["holders_recorded"])
	}

	// The text form.
	dir := t.TempDir()
	ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out.txt")
	cmd := exec.Command(bindwatchBin, "--port", "8080", "--comm", "nginx", "--no-holders", "--format", "text",
		"--backend", testenv.Backend(), "--ready-file", ready, "--output", out)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	text, _ := os.ReadFile(out)
	if !bytes.Contains(text, []byte("; only port 8080; comm nginx; holders not recorded in the kernel (--no-holders)")) {
		t.Errorf("the text start line does not say the filters:\n%s", text)
	}
}

// exhaustConnect, in the network namespace name (testenv.NewNetns), uses up
// a 4-port range toward 127.0.0.1:9000 with 4 connections and makes a
// fifth connect() fail with EADDRNOTAVAIL: an implicit bind's failure.
func exhaustConnect(t *testing.T, name string) {
	t.Helper()
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_port_range", "40000 40003")
	in := testenv.InNetns(name)
	testenv.StartHelper(t, "hold tcp 127.0.0.1 9000", in...)
	for range 4 {
		testenv.StartHelper(t, "connect 127.0.0.1 9000", in...)
	}
	if c := testenv.StartHelper(t, "connect 127.0.0.1 9000", in...); c.Line[0] != "errno" || c.Line[1] != "99" {
		t.Fatalf("fifth connect() with a 4-port range: %q, want errno 99 (EADDRNOTAVAIL)", c.Line)
	}
}

// An implicit bind's failure (issue 22: connect() found no local port)
// matches the schema in JSON, destination and local_ports included, and
// ECS's fields in ECS (destination.ip, destination.port).
func TestImplicitBindRecordsMatchSchema(t *testing.T) {
	failed := func(lines [][]byte) bool {
		for _, l := range lines {
			if bytes.Contains(l, []byte(`"local_ports"`)) {
				return true
			}
		}
		return false
	}
	t.Run("json", func(t *testing.T) {
		name, _ := testenv.NewNetns(t)
		lines := runTraceUntil(t, func() { exhaustConnect(t, name) }, failed, "--port", "0", "--netns", name, "--fold", "0")
		seen := schemaLines(t, lines)
		if seen["bind_failure"] != 1 {
			t.Errorf("record types %v, want 1 bind_failure", seen)
		}
	})
	t.Run("ecs", func(t *testing.T) {
		s := loadECSSchema(t)
		name, _ := testenv.NewNetns(t)
		lines := runTraceUntil(t, func() { exhaustConnect(t, name) }, failed, "--port", "0", "--netns", name, "--fold", "0", "--format", "ecs")
		docs := ecsDocs(t, s, "trace", string(bytes.Join(lines, []byte("\n")))+"\n")
		if len(docs["bind_failure"]) != 1 {
			t.Fatalf("%d bind_failure documents, want 1", len(docs["bind_failure"]))
		}
		d := docs["bind_failure"][0]
		for name, want := range map[string]any{
			"event.action": "connect-failed", "error.code": "EADDRNOTAVAIL", "destination.ip": "127.0.0.1",
			"destination.port": float64(9000), "source.ip": "0.0.0.0", "bindwatch.cause": "ephemeral_exhausted",
			"bindwatch.local_ports.in_use": float64(4),
		} {
			if got := field(d, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if field(d, "server.port") != nil {
			t.Errorf("server.port = %v in a connect() failure: the failing side is the client", field(d, "server.port"))
		}
	})
}
