package testenv

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// lockedElsewhere asks another process (python3's fcntl.lockf, a POSIX
// lock, which open file description locks conflict with) whether it can
// lock port's byte of the port lock file.
func lockedElsewhere(t *testing.T, port int) bool {
	t.Helper()
	out, err := exec.Command("python3", "-c", `import fcntl, sys
f = open(sys.argv[1], "r+")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
    print("got it")
except OSError:
    print("locked")`, portLockFile, strconv.Itoa(port)).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out)) == "locked"
}

// A port FreePort gave one test program is no other's until the test
// ends, whatever network namespace the other runs in.
func TestFreePortReserved(t *testing.T) {
	Require(t, "python3", "another process tries the port's lock")
	var port int
	t.Run("holds", func(t *testing.T) {
		port = FreePort(t)
		if !lockedElsewhere(t, port) {
			t.Errorf("port %d: another process could lock it while the test runs", port)
		}
	})
	if lockedElsewhere(t, port) {
		t.Errorf("port %d: still locked after its test ended", port)
	}
}
