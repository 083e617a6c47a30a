package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// who, driven as a user would: it names the process holding a port, agrees
// with ss, matches the documented schema, and exits 0 held / 1 free.
func TestWhoAgreesWithSS(t *testing.T) {
	testenv.RequireRoot(t)
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	holder := testenv.StartHelper(t, "hold tcp 0.0.0.0 "+strconv.Itoa(port)).Cmd

	out, err := exec.Command(bindwatchBin, "who", strconv.Itoa(port)+"/tcp", "--format", "json").Output()
	if err != nil {
		t.Fatalf("who %d/tcp: %v (want exit 0: the port is held)", port, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("who output: %v: %s", err, out)
	}
	if err := schema.Validate(any(doc)); err != nil {
		t.Errorf("who output does not match docs/schema.json: %v\n%s", err, out)
	}
	var pids []int
	for _, h := range doc["holders"].([]any) {
		for _, p := range h.(map[string]any)["processes"].([]any) {
			pids = append(pids, int(p.(map[string]any)["pid"].(float64)))
		}
	}

	ss, err := exec.Command("ss", "-Htlnp", "sport = :"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var ssPids []int
	for _, m := range regexp.MustCompile(`pid=(\d+)`).FindAllStringSubmatch(string(ss), -1) {
		n, _ := strconv.Atoi(m[1])
		ssPids = append(ssPids, n)
	}
	if len(pids) != 1 || pids[0] != holder.Process.Pid || len(ssPids) != 1 || ssPids[0] != pids[0] {
		t.Errorf("who says pids %v, ss says %v (%s), the holder is %d", pids, ssPids, strings.TrimSpace(string(ss)), holder.Process.Pid)
	}

	free := testenv.FreePort(t)
	cmd := exec.Command(bindwatchBin, "who", strconv.Itoa(free), "--format", "json")
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("who on a free port: %v, want exit 1", err)
	}
}
