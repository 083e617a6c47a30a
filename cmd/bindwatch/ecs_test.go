package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// ecsDir holds the ECS 9.4.0 field facts (fields.csv, allowed-values.txt):
// ../shared/ecs beside the repository, as CI has it, or
// $BINDWATCH_SHARED_DIR/ecs.
func ecsDir() string {
	if d := os.Getenv("BINDWATCH_SHARED_DIR"); d != "" {
		return filepath.Join(d, "ecs")
	}
	return filepath.Join("..", "..", "..", "shared", "ecs")
}

// ecsField is one row of fields.csv.
type ecsField struct {
	typ   string
	array bool
}

// ecsSchema checks documents against ECS's field names and types and its
// allowed event.* values.
type ecsSchema struct {
	fields    map[string]ecsField
	allowed   map[string][]string // event.kind, event.category, … → values
	catTypes  map[string][]string // category → the event.type values it expects
	prefixOwn string              // bindwatch's own namespace
}

func loadECSSchema(t *testing.T) *ecsSchema {
	t.Helper()
	dir := ecsDir()
	fields, err := os.ReadFile(filepath.Join(dir, "fields.csv"))
	if err == nil {
		var allowed []byte
		if allowed, err = os.ReadFile(filepath.Join(dir, "allowed-values.txt")); err == nil {
			return parseECSSchema(t, fields, allowed)
		}
	}
	// CI has the facts beside the repository: missing there is a failure.
	if os.Getenv("CI") != "" {
		t.Fatalf("ECS field facts not found: %v (CI keeps them in ../shared/ecs beside the repository)", err)
	}
	testenv.Missing(t, "ECS field facts not found: %v (set BINDWATCH_SHARED_DIR to the directory holding ecs/)", err)
	return nil
}

func parseECSSchema(t *testing.T, fields, allowed []byte) *ecsSchema {
	s := &ecsSchema{fields: map[string]ecsField{}, allowed: map[string][]string{}, catTypes: map[string][]string{}, prefixOwn: "bindwatch"}
	sc := bufio.NewScanner(strings.NewReader(string(fields)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) < 4 || f[0] == "field" {
			continue
		}
		s.fields[f[0]] = ecsField{typ: f[1], array: f[3] == "array"}
	}
	for line := range strings.Lines(string(allowed)) {
		line = strings.TrimSpace(line)
		name, values, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if cat, isCat := strings.CutPrefix(name, "category "); isCat {
			s.catTypes[cat] = strings.Fields(values)
		} else {
			s.allowed[name] = strings.Fields(values)
		}
	}
	if len(s.fields) < 1000 || len(s.allowed["event.kind"]) == 0 || len(s.catTypes) == 0 {
		t.Fatalf("ECS field facts look wrong: %d fields, %d allowed-value lists, %d categories", len(s.fields), len(s.allowed), len(s.catTypes))
	}
	return s
}

// check returns every way doc breaks ECS: a field ECS does not define
// outside bindwatch.*, a value of the wrong type, an event.* value ECS
// does not allow, a missing @timestamp, ecs.version or event.kind.
func (s *ecsSchema) check(doc map[string]any) []string {
	var errs []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if prefix == s.prefixOwn || strings.HasPrefix(prefix, s.prefixOwn+".") {
			return // bindwatch's own fields: docs/schema.md
		}
		f, known := s.fields[prefix]
		if m, ok := v.(map[string]any); ok && (!known || (f.typ != "object" && f.typ != "flattened")) {
			for k, e := range m {
				name := k
				if prefix != "" {
					name = prefix + "." + k
				}
				walk(name, e)
			}
			return
		}
		if !known {
			errs = append(errs, fmt.Sprintf("%s: not an ECS field", prefix))
			return
		}
		values := []any{v}
		if a, ok := v.([]any); ok {
			if !f.array {
				errs = append(errs, fmt.Sprintf("%s: an array, but ECS has one value", prefix))
			}
			values = a
		} else if f.array {
			errs = append(errs, fmt.Sprintf("%s: one value, but ECS has an array", prefix))
		}
		for _, e := range values {
			if !ecsTypeMatches(f.typ, e) {
				errs = append(errs, fmt.Sprintf("%s = %v (%T): not of ECS type %s", prefix, e, e, f.typ))
			}
		}
	}
	walk("", doc)

	flat := func(name string) []string {
		var v any = doc
		for _, p := range strings.Split(name, ".") {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		switch v := v.(type) {
		case string:
			return []string{v}
		case []any:
			var out []string
			for _, e := range v {
				s, _ := e.(string)
				out = append(out, s)
			}
			return out
		}
		return nil
	}
	if _, ok := doc["@timestamp"]; !ok {
		errs = append(errs, "@timestamp missing")
	}
	if v := flat("ecs.version"); !slices.Equal(v, []string{"9.4.0"}) {
		errs = append(errs, fmt.Sprintf("ecs.version %q, want 9.4.0", v))
	}
	if len(flat("event.kind")) == 0 {
		errs = append(errs, "event.kind missing")
	}
	for _, name := range []string{"event.kind", "event.category", "event.type", "event.outcome"} {
		for _, v := range flat(name) {
			if !slices.Contains(s.allowed[name], v) {
				errs = append(errs, fmt.Sprintf("%s %q: not an allowed value (%s)", name, v, strings.Join(s.allowed[name], " ")))
			}
		}
	}
	for _, cat := range flat("event.category") {
		for _, typ := range flat("event.type") {
			if !slices.Contains(s.catTypes[cat], typ) {
				errs = append(errs, fmt.Sprintf("event.type %q is not one category %s expects (%s)", typ, cat, strings.Join(s.catTypes[cat], " ")))
			}
		}
	}
	return errs
}

func ecsTypeMatches(typ string, v any) bool {
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "match_only_text", "text":
		_, ok := v.(string)
		return ok
	case "long", "integer", "short", "byte":
		n, ok := v.(float64)
		return ok && n == float64(int64(n))
	case "double", "float", "scaled_float", "half_float":
		_, ok := v.(float64)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "date":
		s, ok := v.(string)
		if !ok {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, s)
		return err == nil
	case "ip":
		s, ok := v.(string)
		if !ok {
			return false
		}
		_, err := netip.ParseAddr(s)
		return err == nil
	case "object", "flattened", "nested":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

// ecsDocs decodes ECS JSON lines, checking each against ECS; it returns
// them by bindwatch.type.
func ecsDocs(t *testing.T, s *ecsSchema, what, out string) map[string][]map[string]any {
	t.Helper()
	byType := map[string][]map[string]any{}
	for line := range strings.Lines(out) {
		var doc map[string]any
		if err := json.Unmarshal([]byte(line), &doc); err != nil {
			t.Errorf("%s: not JSON: %v: %.300s", what, err, line)
			continue
		}
		for _, e := range s.check(doc) {
			t.Errorf("%s: %s\n%.1500s", what, e, line)
		}
		own, _ := doc["bindwatch"].(map[string]any)
		typ, _ := own["type"].(string)
		byType[typ] = append(byType[typ], doc)
	}
	return byType
}

// field is a dotted field of doc.
func field(doc map[string]any, name string) any {
	var v any = doc
	for _, p := range strings.Split(name, ".") {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// The real binary's --format ecs, through every command that writes
// records, with real failures (EADDRINUSE with a holder, EADDRNOTAVAIL,
// folded repeats, a storm that overflows the ring buffer): every field
// outside bindwatch.* is an ECS 9.4.0 field of the right type, and every
// event.* value one ECS allows.
func TestECSOutputMatchesECS(t *testing.T) {
	s := loadECSSchema(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	fail := func(args ...string) {
		cmd := testenv.Helper("bind tcp 127.0.0.1 " + p)
		cmd.Args = append(cmd.Args, args...)
		cmd.Run()
	}
	holder := testenv.StartHelperArgs(t, "hold tcp 127.0.0.1 "+p, "--token", "s3cret-tok")

	t.Run("tracing", func(t *testing.T) {
		lines := runTrace(t, func() {
			fail("--password", "hunter2", "--server.port="+p)
			testenv.FailBind(t, "udp", "203.0.113.1", port, testenv.Opts{}, syscall.EADDRNOTAVAIL)
			// Three failures of one socket within the fold window: one
			// reported, two folded into a repeats record.
			fd, _ := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
			defer syscall.Close(fd)
			for range 3 {
				testenv.Bind(fd, "127.0.0.1", port)
			}
		}, "--port", p, "--format", "ecs", "--fold", "10s")
		var out strings.Builder
		for _, l := range lines {
			out.Write(l)
			out.WriteByte('\n')
		}
		docs := ecsDocs(t, s, "trace", out.String())
		checkNoSecret(t, "trace", out.String())
		for _, typ := range []string{"start", "bind_failure", "repeats", "stop"} {
			if len(docs[typ]) == 0 {
				t.Errorf("no %s document among %d lines", typ, len(lines))
			}
		}
		var f map[string]any
		for _, d := range docs["bind_failure"] {
			if field(d, "error.code") == "EADDRINUSE" && field(d, "process.pid") != float64(os.Getpid()) {
				f = d
			}
		}
		if f == nil {
			t.Fatalf("no EADDRINUSE failure of the helper:\n%s", out.String())
		}
		for name, want := range map[string]any{
			"event.kind": "event", "event.outcome": "failure", "event.action": "bind-failed",
			"network.transport": "tcp", "network.type": "ipv4", "network.iana_number": "6",
			"server.ip": "127.0.0.1", "server.port": float64(port), "process.parent.pid": float64(os.Getpid()),
			"user.id": strconv.Itoa(os.Getuid()), "bindwatch.process.cmdline_redacted": true,
		} {
			if got := field(f, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		// The UDP failure: its own transport and IANA number.
		var u map[string]any
		for _, d := range docs["bind_failure"] {
			if field(d, "error.code") == "EADDRNOTAVAIL" {
				u = d
			}
		}
		if u == nil {
			t.Errorf("no EADDRNOTAVAIL failure of the UDP bind:\n%s", out.String())
		}
		for name, want := range map[string]any{
			"network.transport": "udp", "network.type": "ipv4", "network.iana_number": "17",
			"server.ip": "203.0.113.1", "server.port": float64(port),
		} {
			if got := field(u, name); u != nil && got != want {
				t.Errorf("UDP failure: %s = %v, want %v", name, got, want)
			}
		}
		for _, name := range []string{"@timestamp", "host.name", "process.name", "process.args",
			"process.start", "related.ip", "related.user", "bindwatch.holders", "bindwatch.diagnosis", "bindwatch.hint", "bindwatch.socket"} {
			if field(f, name) == nil {
				t.Errorf("%s missing from the failure document", name)
			}
		}
		if h, _ := field(f, "bindwatch.holders").([]any); len(h) == 0 || !strings.Contains(fmt.Sprint(h), strconv.Itoa(holder.PID)) {
			t.Errorf("bindwatch.holders %v: want the holder, pid %d", h, holder.PID)
		}
		// The start document carries the filters in force.
		for _, d := range docs["start"] {
			if ports, _ := field(d, "bindwatch.start.filters.ports").([]any); len(ports) != 1 || ports[0] != p || field(d, "bindwatch.start.holders_recorded") != true {
				t.Errorf("start document: bindwatch.start.filters.ports %v, holders_recorded %v; want [%s], true",
					field(d, "bindwatch.start.filters.ports"), field(d, "bindwatch.start.holders_recorded"), p)
			}
		}
		// A repeats document says when its folded failures happened:
		// event.start and event.end (first and last), in that order,
		// around its own @timestamp at the latest.
		for _, d := range docs["repeats"] {
			start, _ := field(d, "event.start").(string)
			end, _ := field(d, "event.end").(string)
			at, _ := field(d, "@timestamp").(string)
			ts, err1 := time.Parse(time.RFC3339Nano, start)
			te, err2 := time.Parse(time.RFC3339Nano, end)
			tat, err3 := time.Parse(time.RFC3339Nano, at)
			if err1 != nil || err2 != nil || err3 != nil || te.Before(ts) || ts.After(tat) {
				t.Errorf("repeats document: event.start %q, event.end %q, @timestamp %q: want first <= last, first <= @timestamp", start, end, at)
			}
		}
	})

	t.Run("lost", func(t *testing.T) {
		// A ring buffer of one page and a storm with nothing folded.
		lines := runTrace(t, func() {
			cmd := testenv.Helper(fmt.Sprintf("storm tcp 127.0.0.1 %d 20000", port))
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
		}, "--port", p, "--format", "ecs", "--fold", "0", "--ring-size", "4096")
		var out strings.Builder
		for _, l := range lines {
			out.Write(l)
			out.WriteByte('\n')
		}
		if docs := ecsDocs(t, s, "storm", out.String()); len(docs["lost"]) == 0 {
			t.Errorf("no lost document after a storm into a 4 KiB ring buffer (%d lines)", len(lines))
		}
	})

	t.Run("doctor", func(t *testing.T) {
		res := bindwatch(t, "doctor", "--format", "ecs")
		if docs := ecsDocs(t, s, "doctor", res.stdout); len(docs["doctor"]) != 1 {
			t.Errorf("doctor --format ecs: want one doctor document; %s", res)
		}
	})

	for _, args := range [][]string{{"who", p + "/tcp"}, {"free", p + "/tcp"}, {"wait-free", p + "/tcp", "--timeout", "0"}} {
		t.Run(args[0], func(t *testing.T) {
			res := bindwatch(t, append(args, "--format", "ecs")...)
			if res.stdout == "" {
				t.Fatalf("no output; %s", res)
			}
			checkNoSecret(t, args[0], res.stdout+res.stderr)
			for _, docs := range ecsDocs(t, s, args[0], res.stdout) {
				for _, d := range docs {
					if field(d, "server.port") != float64(port) || field(d, "network.transport") != "tcp" {
						t.Errorf("%s: server.port %v, network.transport %v, want %d tcp", args[0], field(d, "server.port"), field(d, "network.transport"), port)
					}
				}
			}
		})
	}
}

// The ECS check must be able to fail: unknown fields, wrong types and
// event values ECS does not allow are caught.
func TestECSCheckRejectsDrift(t *testing.T) {
	s := loadECSSchema(t)
	good := `{"@timestamp":"2026-11-25T10:31:02.113Z","ecs":{"version":"9.4.0"},"event":{"kind":"event","category":["network"],"type":["start"],"outcome":"failure"},"server":{"ip":"::1","port":80},"process":{"pid":1,"args":["a"]},"bindwatch":{"anything":{"goes":1}}}`
	var doc map[string]any
	json.Unmarshal([]byte(good), &doc)
	if errs := s.check(doc); len(errs) > 0 {
		t.Errorf("a good document was rejected: %q", errs)
	}
	for _, bad := range []string{
		strings.Replace(good, `"pid":1`, `"pid":1,"bogus":2`, 1),       // not an ECS field
		strings.Replace(good, `"port":80`, `"port":"80"`, 1),           // wrong type
		strings.Replace(good, `"ip":"::1"`, `"ip":"localhost"`, 1),     // not an ip
		strings.Replace(good, `"args":["a"]`, `"args":"a"`, 1),         // an array field as one value
		strings.Replace(good, `"kind":"event"`, `"kind":"failure"`, 1), // not an allowed kind
		strings.Replace(good, `"type":["start"]`, `"type":["error"]`, 1),
		strings.Replace(good, `"version":"9.4.0"`, `"version":"8.0.0"`, 1),
	} {
		var doc map[string]any
		json.Unmarshal([]byte(bad), &doc)
		if len(s.check(doc)) == 0 {
			t.Errorf("accepted %s", bad)
		}
	}
}
