package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/sink"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// Real podman containers: a host process fails on a port a container
// holds (host network), and a process in one container fails on a port
// another container holds in their shared network namespace. Both sides
// are named by container name, image and runtime, in JSON and in text.
func TestContainerNames(t *testing.T) {
	testenv.RequirePodman(t)
	suffix := strconv.Itoa(syscall.Getpid())
	hostHolder, nsHolder, nsFailer := "bw-host-holder-"+suffix, "bw-ns-holder-"+suffix, "bw-ns-failer-"+suffix
	port, nsPort := testenv.FreePort(t), testenv.FreePort(t)

	var failer *testenv.HelperProc
	lines := runTrace(t, func() {
		testenv.StartContainer(t, hostHolder, fmt.Sprintf("hold tcp 0.0.0.0 %d", port), "--network=host")
		testenv.FailBind(t, "tcp", "0.0.0.0", port, testenv.Opts{}, syscall.EADDRINUSE)

		testenv.StartContainer(t, nsHolder, fmt.Sprintf("hold tcp 0.0.0.0 %d", nsPort), "--network=none")
		// The failer stays (trybind waits for its stdin) until the test
		// ends: a container run with --rm that exits at once is gone,
		// state and cgroup, before a loaded machine resolves its failure.
		failer = testenv.StartContainer(t, nsFailer, fmt.Sprintf("trybind tcp 0.0.0.0 %d", nsPort), "--network=container:"+nsHolder)
	}, "--port", strconv.Itoa(port), "--port", strconv.Itoa(nsPort), "--fold", "0")
	if len(failer.Line) < 2 || failer.Line[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
		t.Fatalf("the bind in container %s said %q, want errno %d (EADDRINUSE)", nsFailer, failer.Line, syscall.EADDRINUSE)
	}

	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	failures := map[uint16]*events.Failure{}
	for _, line := range lines {
		var doc any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if err := schema.Validate(doc); err != nil {
			t.Errorf("line does not match docs/schema.json: %v\n%s", err, line)
		}
		var f events.Failure
		if json.Unmarshal(line, &f) == nil && f.Type == events.TypeFailure {
			failures[f.Port] = &f
		}
	}
	want := func(p *events.Process, name, what string) {
		t.Helper()
		c := p.Container
		if c.Runtime != "podman" || c.Name != name || c.Image != testenv.HelperImage || len(c.ID) != 64 || p.ContainerID != c.ID {
			t.Errorf("%s: container %+v (container_id %q), want podman container %s of image %s", what, c, p.ContainerID, name, testenv.HelperImage)
		}
	}
	host := failures[uint16(port)]
	if host == nil || len(host.Holders) == 0 || len(host.Holders[0].Processes) == 0 {
		t.Fatalf("no failure with a holder process on port %d in %s", port, lines)
	}
	if host.Process.Container != (events.Container{}) {
		t.Errorf("the host process is said to be in a container: %+v", host.Process.Container)
	}
	want(&host.Holders[0].Processes[0], hostHolder, "holder of the host failure")
	if stop := "podman stop " + hostHolder; !strings.Contains(host.Hint, stop) {
		t.Errorf("hint %q does not say %q", host.Hint, stop)
	}
	if text := events.Text(host); !strings.Contains(text, "in container "+hostHolder) || !strings.Contains(text, "container "+hostHolder) {
		t.Errorf("text line does not name the holder's container:\n%s", text)
	}

	ns := failures[uint16(nsPort)]
	if ns == nil || len(ns.Holders) == 0 || len(ns.Holders[0].Processes) == 0 {
		t.Fatalf("no failure with a holder process on port %d in %s", nsPort, lines)
	}
	want(&ns.Process, nsFailer, "failing process in a container")
	want(&ns.Holders[0].Processes[0], nsHolder, "holder in a container")
	text := events.Text(ns)
	t.Logf("%s\n%s", events.Text(host), text)
	for _, name := range []string{nsFailer, nsHolder} {
		if !strings.Contains(text, "container "+name) {
			t.Errorf("text does not name container %s:\n%s", name, text)
		}
	}

	// As an ECS document (--format ecs), the failing process's container
	// is in container.*.
	b, err := sink.ECS(ns)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(b, &doc)
	for name, want := range map[string]any{"container.id": ns.Process.Container.ID, "container.name": nsFailer,
		"container.runtime": "podman", "container.image.name": testenv.HelperImage} {
		if got := field(doc, name); got != want {
			t.Errorf("ECS %s = %v, want %v", name, got, want)
		}
	}
}
