package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireCommand skips a test that needs programs this machine lacks (a
// daemon such as rsyslogd, a tool such as socat), saying which and why —
// unless BINDWATCH_REQUIRE_BPF=1 (CI, which installs them with
// scripts/test-deps.sh), where a missing one is a failure.
func RequireCommand(t testing.TB, why string, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("BINDWATCH_REQUIRE_BPF") == "1" {
				t.Fatalf("BINDWATCH_REQUIRE_BPF=1 but %s is not installed (%s; scripts/test-deps.sh installs it): %v", name, why, err)
			}
			t.Skipf("%s is not installed (%s; scripts/test-deps.sh installs it, and CI's BINDWATCH_REQUIRE_BPF=1 makes this a failure)", name, why)
		}
	}
}
