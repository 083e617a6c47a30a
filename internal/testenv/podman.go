package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// HelperImage is the container image of the static test helper
// (internal/testenv/testhelper), FROM scratch: nothing from a registry.
const HelperImage = "localhost/bindwatch-testhelper:latest"

// PodmanRun is how podman starts a container on the test machines: the
// runc runtime (crun is not installed), and ulimits that runc can set
// under the VM's hard limits (without them it refuses to start).
var PodmanRun = []string{"podman", "--runtime", "runc", "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// ImageCaps is the capability set the bindwatch image runs with (podman
// --cap-drop=all --cap-add=..., the DaemonSet, the systemd unit), found
// by experiment on Linux 6.18 with Debian 12's podman and runc, dropping
// one at a time from a set that worked:
//
//   - CAP_SYS_ADMIN: the default seccomp profile of Debian's podman (and
//     docker's before 20.10) allows bpf() and perf_event_open() only with
//     it; mounting tracefs where the host has not; setns() into another
//     network namespace to look for a container's holders. With CAP_BPF
//     and CAP_PERFMON instead, a seccomp profile that allows bpf() and a
//     host tracefs mounted in, tracing works, but a holder in another
//     network namespace is no longer looked up live (setns is refused):
//     CAP_SYS_ADMIN is needed, and with it CAP_BPF and CAP_PERFMON add
//     nothing.
//   - CAP_SYS_PTRACE: /proc/PID/exe and /proc/PID/ns/net of processes of
//     other users (a holder's executable, its namespace).
//
// Not needed: CAP_NET_ADMIN (sock_diag dumps need none), CAP_DAC_READ_
// SEARCH (the runtime state bindwatch reads is root's own), CAP_KILL
// (only `free --kill`). --privileged is not needed.
var ImageCaps = []string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}

// ImageRunArgs are podman run's options for the bindwatch image, as
// README.md gives them: the host's pid, network and cgroup namespaces (to
// see every process, socket and cgroup), only ImageCaps, and read-only the
// container runtime's state (container names) and /etc/passwd (user
// names).
func ImageRunArgs() []string {
	args := []string{"--pid=host", "--network=host", "--cgroupns=host", "--cap-drop=all"}
	for _, c := range ImageCaps {
		args = append(args, "--cap-add="+c)
	}
	return append(args,
		"-v", "/var/lib/containers/storage/overlay-containers:/var/lib/containers/storage/overlay-containers:ro",
		"-v", "/etc/passwd:/etc/passwd:ro")
}

var helperImage struct {
	once sync.Once
	err  error
}

// RequirePodman skips the test when podman is not installed (BINDWATCH_
// REQUIRE_BPF=1 runs turn a skip into a failure) and builds HelperImage
// once per test binary.
func RequirePodman(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "containers started by podman (apt-get install podman runc)", "podman", "runc")
	helperImage.once.Do(func() { helperImage.err = buildHelperImage() })
	if helperImage.err != nil {
		t.Fatal(helperImage.err)
	}
}

func buildHelperImage() error {
	dir, err := os.MkdirTemp("", "bindwatch-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "testhelper"), "github.com/bindwatch/bindwatch/internal/testenv/testhelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the static test helper: %v\n%s", err, out)
	}
	containerfile := "FROM scratch\nCOPY testhelper /testhelper\nENTRYPOINT [\"/testhelper\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("podman", "build", "-q", "-t", HelperImage, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("podman build %s: %v\n%s", HelperImage, err, out)
	}
	return nil
}

// StartContainer runs a helper doing job in a new podman container named
// name, with podmanArgs added to podman run's options (--network=none,
// --network=container:OTHER, ...). It waits for the helper's first line,
// sets PID to the helper's pid on the host, and removes the container
// when the test ends.
func StartContainer(t testing.TB, name, job string, podmanArgs ...string) *HelperProc {
	t.Helper()
	RequirePodman(t)
	args := append(append([]string{}, PodmanRun[1:]...), "--rm", "-i", "--name", name, "-e", helperEnv+"="+job)
	args = append(append(args, podmanArgs...), HelperImage)
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", "-t", "0", name).Run() })
	h, err := spawn(exec.Command(PodmanRun[0], args...), job)
	if err != nil {
		t.Fatalf("container %s: %v", name, err)
	}
	t.Cleanup(h.Stop)
	out, err := exec.Command("podman", "inspect", "-f", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatalf("podman inspect %s: %v", name, err)
	}
	if h.PID, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
		t.Fatalf("podman inspect %s: pid %q", name, out)
	}
	return h
}
