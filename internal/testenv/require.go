package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Every test that needs something a laptop may lack — root, a daemon
// (rsyslogd, prometheus, podman, dockerd, containerd), a browser
// (chromium), a tool (socat, promtool, logrotate), facts kept beside the
// repository — asks for it here, so `go test ./...` as a user with no
// daemons passes, saying what it skipped and why, while CI
// (BINDWATCH_REQUIRE_BPF=1, where scripts/test-deps.sh installed all of
// it and tests run as root) fails instead: a skip there would hide a test.

// RequireBPFEnv is the variable that turns a missing prerequisite into a
// failure.
const RequireBPFEnv = "BINDWATCH_REQUIRE_BPF"

// Strict tells whether every test must run (BINDWATCH_REQUIRE_BPF=1).
func Strict() bool { return os.Getenv(RequireBPFEnv) == "1" }

// Missing skips t because a prerequisite is missing — what, and how to
// get it — or fails it when BINDWATCH_REQUIRE_BPF=1.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("%s=1 requires every test to run, but: %s", RequireBPFEnv, msg)
	}
	t.Skipf("skipped: %s (%s=1, as in CI, makes this a failure)", msg, RequireBPFEnv)
}

// RequireCommand skips a test that needs programs this machine lacks (a
// daemon such as rsyslogd, a tool such as socat), saying which and why —
// unless BINDWATCH_REQUIRE_BPF=1 (CI, which installs them with
// scripts/test-deps.sh), where a missing one is a failure.
func RequireCommand(t testing.TB, why string, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			Missing(t, "%s is not installed: %s; scripts/test-deps.sh installs it", name, why)
		}
	}
}

// Require is RequireCommand for one program: testenv.Require(t,
// "rsyslogd", "the syslog tests send to a real rsyslogd").
func Require(t testing.TB, name, why string) {
	t.Helper()
	RequireCommand(t, why, name)
}
