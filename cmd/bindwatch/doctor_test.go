package main

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// doctor loads every backend for real; on any kernel CI runs on, at least
// the backend under test must be reported working, and auto must pick one.
func TestDoctor(t *testing.T) {
	testenv.RequireRoot(t)
	out, err := exec.Command(bindwatchBin, "doctor", "--format", "json").Output()
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("doctor JSON: %v\n%s", err, out)
	}
	if err := recordSchema().Validate(doc); err != nil {
		t.Errorf("doctor's record does not match docs/schema.json: %v\n%s", err, out)
	}
	var r events.Doctor
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("doctor JSON: %v\n%s", err, out)
	}
	if r.Type != events.TypeDoctor || r.Version != events.Version || r.Bindwatch == "" {
		t.Errorf("type %q, version %d, bindwatch %q: want doctor, %d and the binary's version", r.Type, r.Version, r.Bindwatch, events.Version)
	}
	if len(r.Backends) != 3 || r.Auto == "" || r.Backends[r.Auto] != "ok" {
		t.Errorf("backends %v, auto %q: want all three probed and auto one that works", r.Backends, r.Auto)
	}
	if b := testenv.Backend(); b != "auto" && r.Backends[b] != "ok" {
		t.Errorf("backend under test %s: %s", b, r.Backends[b])
	}
	if r.Kernel == "" || r.BTF == "" || r.Tracefs == "" || r.Lockdown == "" || r.Privileges != "root" {
		t.Errorf("report incomplete: %+v", r)
	}
}
