package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The image `make image` builds, run as README.md says (host pid, network
// and cgroup namespaces; only testenv.ImageCaps; the runtime's state and
// /etc/passwd read-only), reports a host process failing on a port another
// user's host process holds, and a process in a container (its own network
// namespace) failing on a port another container in that namespace holds —
// each with its holder, named.
func TestImage(t *testing.T) {
	testenv.RequirePodman(t)
	const image = "localhost/bindwatch-test"
	build := exec.Command("make", "-C", "../..", "image", "IMAGE="+image, "VERSION=test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	suffix := strconv.Itoa(os.Getpid())
	name := "bw-image-" + suffix
	args := append(append([]string{}, testenv.PodmanRun[1:]...), "--rm", "--name", name)
	args = append(args, testenv.ImageRunArgs()...)
	port, nsPort := testenv.FreePort(t), testenv.FreePort(t)
	args = append(args, image+":test", "--port", strconv.Itoa(port), "--port", strconv.Itoa(nsPort), "--fold", "0")
	cmd := exec.Command(testenv.PodmanRun[0], args...)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", "-t", "0", name).Run(); cmd.Wait() })
	records := make(chan map[string]any, 16)
	go func() {
		defer close(records)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				records <- rec
			} else {
				t.Errorf("not a JSON line on the image's stdout: %s", sc.Bytes())
			}
		}
	}()
	next := func(what string) map[string]any {
		t.Helper()
		select {
		case rec, ok := <-records:
			if ok {
				return rec
			}
		case <-time.After(60 * time.Second):
		}
		t.Fatalf("no %s record from the image; stderr:\n%s", what, stderr.String())
		return nil
	}
	if start := next("start"); start["type"] != events.TypeStart {
		t.Fatalf("first record %v, want start", start)
	}

	holder := testenv.StartHelperAsUser(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port), 65534)
	testenv.FailBind(t, "tcp", "0.0.0.0", port, testenv.Opts{}, syscall.EADDRINUSE)
	host := failure(t, next("host bind_failure"))
	if host.Port != uint16(port) || len(host.Holders) == 0 || len(host.Holders[0].Processes) == 0 {
		t.Fatalf("host failure without its holder: %+v", host)
	}
	if p := host.Holders[0].Processes[0]; p.PID != holder.PID || p.UID != 65534 || p.Exe == "" || p.User != "nobody" {
		t.Errorf("holder %+v, want pid %d of uid 65534 (nobody) with its exe (CAP_SYS_PTRACE)", p, holder.PID)
	}
	if host.Process.PID != os.Getpid() {
		t.Errorf("failing pid %d, want this test's %d (host pid namespace)", host.Process.PID, os.Getpid())
	}

	nsHolder, nsFailer := "bw-image-holder-"+suffix, "bw-image-failer-"+suffix
	testenv.StartContainer(t, nsHolder, fmt.Sprintf("hold tcp 0.0.0.0 %d", nsPort), "--network=none")
	// The failer stays (trybind waits for its stdin) until the test ends:
	// a container run with --rm that exits at once is gone, state and
	// cgroup, before a loaded machine resolves its failure.
	if f := testenv.StartContainer(t, nsFailer, fmt.Sprintf("trybind tcp 0.0.0.0 %d", nsPort), "--network=container:"+nsHolder); len(f.Line) < 2 || f.Line[1] != strconv.Itoa(int(syscall.EADDRINUSE)) {
		t.Fatalf("bind in container %s said %q, want errno %d (EADDRINUSE)", nsFailer, f.Line, syscall.EADDRINUSE)
	}
	ns := failure(t, next("container bind_failure"))
	if ns.Port != uint16(nsPort) || len(ns.Holders) == 0 || len(ns.Holders[0].Processes) == 0 || ns.Holders[0].Source != events.SeenLive {
		t.Fatalf("container failure without a live holder: %+v", ns)
	}
	if c := ns.Holders[0].Processes[0].Container; c.Name != nsHolder || c.Runtime != "podman" {
		t.Errorf("holder's container %+v, want podman container %s", c, nsHolder)
	}
	if c := ns.Process.Container; c.Name != nsFailer {
		t.Errorf("failing process's container %+v, want %s", c, nsFailer)
	}
	t.Logf("%s\n%s", events.Text(host), events.Text(ns))

	exec.Command("podman", "kill", "-s", "INT", name).Run()
	if stop := next("stop"); stop["type"] != events.TypeStop {
		t.Errorf("last record %v, want stop", stop)
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Errorf("the image's bindwatch exited with %v after SIGINT: %s", err, stderr.String())
	}
}

func failure(t *testing.T, rec map[string]any) *events.Failure {
	t.Helper()
	b, _ := json.Marshal(rec)
	var f events.Failure
	if err := json.Unmarshal(b, &f); err != nil || f.Type != events.TypeFailure {
		t.Fatalf("want a bind_failure, got %s", strings.TrimSpace(string(b)))
	}
	return &f
}
