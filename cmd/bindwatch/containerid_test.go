package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// processesOf collects, from JSON documents, every object whose pid (at
// key) is pid: a process as the JSON form or the ECS form describes it.
func processesOf(t *testing.T, out, key string, pid int) []map[string]any {
	t.Helper()
	var found []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v[key] == float64(pid) {
				found = append(found, v)
			}
			for _, w := range v {
				walk(w)
			}
		case []any:
			for _, w := range v {
				walk(w)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var doc any
		if err := json.Unmarshal([]byte(line), &doc); err != nil {
			t.Fatalf("not a JSON line: %v: %s", err, line)
		}
		walk(doc)
	}
	return found
}

// A process's container id has one rule (internal/enrich): JSON's
// container_id and container.id, and ECS's container.id, give the same id,
// and podman's conmon, which watches a container from its own scope
// (libpod-conmon-<id>.scope), is in no container. Real cgroups, processes
// and failures; the scopes are only cgroups podman would make.
func TestContainerIDOneRule(t *testing.T) {
	const id = "4f2a6c0d9b1e8a7f3c5d2e1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10"
	for _, c := range []struct {
		scope, want string
	}{
		{"libpod-" + id + ".scope", id},
		{"libpod-conmon-" + id + ".scope", ""},
	} {
		t.Run(c.scope[:len("libpod-conmon")], func(t *testing.T) {
			fd := unitCgroup(t, "machine.slice/"+c.scope)
			port := testenv.FreePort(t)
			p := strconv.Itoa(port)
			holder := testenv.StartHelperInCgroup(t, "hold tcp 127.0.0.1 "+p, fd)

			// JSON: the holder (who) and the failing process (tracing).
			res := bindwatch(t, "who", p+"/tcp", "--format", "json")
			procs := processesOf(t, res.stdout, "pid", holder.PID)
			if len(procs) == 0 {
				t.Fatalf("who --format json: no process with pid %d; %s", holder.PID, res)
			}
			lines := runTraceUntil(t, func() { failIn(t, fd, port) }, func(lines [][]byte) bool {
				return len(failures(t, lines)) > 0
			}, "--port", p, "--fold", "0")
			fs := failures(t, lines)
			if len(fs) != 1 {
				t.Fatalf("want one failure, got %d", len(fs))
			}
			procs = append(procs, processesOf(t, string(bytes.Join(lines, []byte("\n"))), "pid", fs[0].Process.PID)...)
			for _, proc := range procs {
				cid, _ := proc["container_id"].(string)
				inner, _ := proc["container"].(map[string]any)
				innerID, _ := inner["id"].(string)
				if cid != c.want || innerID != c.want {
					t.Errorf("pid %v in %s: container_id %q, container.id %q; want both %q", proc["pid"], c.scope, cid, innerID, c.want)
				}
			}

			// ECS: the failing process's container.
			lines = runTraceUntil(t, func() { failIn(t, fd, port) }, func(lines [][]byte) bool {
				return bytes.Contains(bytes.Join(lines, nil), []byte("bind-failed"))
			}, "--port", p, "--fold", "0", "--format", "ecs")
			docs := ecsDocs(t, loadECSSchema(t), "container", string(bytes.Join(lines, []byte("\n"))))
			if len(docs["bind_failure"]) != 1 {
				t.Fatalf("want one ECS bind_failure document, got %d", len(docs["bind_failure"]))
			}
			if got, _ := field(docs["bind_failure"][0], "container.id").(string); got != c.want {
				t.Errorf("ECS container.id %q for a process in %s, want %q", got, c.scope, c.want)
			}
		})
	}
}
