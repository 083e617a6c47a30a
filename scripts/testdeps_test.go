// Package scripts holds no Go code: its tests run the shell scripts beside
// them for real.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// test-deps.sh runs as root and logs apt-get's output: a symlink planted
// at a fixed name in /tmp would make it overwrite the link's target. The
// script runs with an apt-get and dpkg-query of the test's own (every
// package missing, the install failing after some output), a link planted
// at the name it used, and the target stays untouched.
func TestTestDepsLogFollowsNoPlantedLink(t *testing.T) {
	testenv.RequireRoot(t)
	// The script creates /usr/sbin/policy-rc.d only if absent, and
	// removes only its own.
	_, policyErr := os.Stat("/usr/sbin/policy-rc.d")
	fakes := t.TempDir()
	for name, body := range map[string]string{
		"dpkg-query": "exit 1",
		"apt-get":    `[ "$1" = install ] && { echo "E: fake apt-get install output"; exit 100; }; exit 0`,
	} {
		if err := os.WriteFile(filepath.Join(fakes, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	planted := "/tmp/bindwatch-test-deps.log"
	if err := os.Symlink(victim, planted); err != nil {
		t.Skipf("cannot plant %s: %v", planted, err)
	}
	defer os.Remove(planted)

	cmd := exec.Command("bash", "test-deps.sh")
	cmd.Env = append(os.Environ(), "PATH="+fakes+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 100 || !strings.Contains(string(out), "E: fake apt-get install output") {
		t.Errorf("test-deps.sh: %v, exit %d; want exit 100 with apt-get's log shown:\n%s", err, code, out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the planted link's target was written: %q", b)
	}
	if _, err := os.Stat("/usr/sbin/policy-rc.d"); (err == nil) != (policyErr == nil) {
		t.Errorf("test-deps.sh changed whether /usr/sbin/policy-rc.d exists (before: %v, after: %v)", policyErr, err)
	}
}
