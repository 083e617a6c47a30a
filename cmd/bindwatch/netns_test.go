package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// whoRecords runs `bindwatch who --format json ARGS...`, checking each
// line against the schema.
func whoRecords(t *testing.T, args ...string) (result, []events.Who) {
	t.Helper()
	res := bindwatch(t, append([]string{"who", "--format", "json"}, args...)...)
	var recs []events.Who
	if res.stdout == "" {
		return res, nil
	}
	for _, l := range jsonOutput(t, res) {
		recs = append(recs, decodeLine[events.Who](t, l))
	}
	return res, recs
}

// --netns names a podman container (by name and by id prefix) or a pid:
// who looks in that network namespace only, and finds the container's
// listener that bindwatch's own namespace does not have.
func TestNetnsContainer(t *testing.T) {
	testenv.RequirePodman(t)
	port := testenv.FreePort(t)
	name := "bw-netns-" + strconv.Itoa(syscall.Getpid())
	c := testenv.StartContainer(t, name, fmt.Sprintf("hold tcp 0.0.0.0 %d", port), "--network=none")
	out, err := exec.Command("podman", "inspect", "-f", "{{.Id}}", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(out))
	arg := fmt.Sprintf("%d/tcp", port)
	if res, recs := whoRecords(t, arg); res.code != 1 || len(recs) != 1 || recs[0].Held {
		t.Fatalf("without --netns the port is free here; %s", res)
	}
	for _, netns := range []string{name, id[:8], strconv.Itoa(c.PID)} {
		res, recs := whoRecords(t, arg, "--netns", netns)
		if res.code != 0 || len(recs) != 1 || !recs[0].Held || len(recs[0].Holders) != 1 {
			t.Fatalf("--netns %s: want the container's listener; %s", netns, res)
		}
		p := recs[0].Holders[0].Processes[0]
		if p.PID != c.PID || p.Container.Name != name {
			t.Errorf("--netns %s: holder pid %d in %+v, want pid %d in container %s", netns, p.PID, p.Container, c.PID, name)
		}
	}
	res := bindwatch(t, "who", "--format", "text", arg, "--netns", name)
	if res.code != 0 || !strings.Contains(res.stdout, "container "+name) || !strings.Contains(res.stdout, "netns") {
		t.Errorf("text output does not name the container and its namespace; %s", res)
	}
}

// --netns names an `ip netns` namespace (by name or path): wait-free
// checks there, and free stops the holder there, which the guard refuses
// without --netns (another namespace).
func TestNetnsIPNetns(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	nsName, _ := testenv.NewNetns(t)
	h := testenv.StartHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port), testenv.InNetns(nsName)...)
	arg := fmt.Sprintf("%d/tcp", port)
	if res, recs := whoRecords(t, arg, "--netns", "/run/netns/"+nsName); res.code != 0 || len(recs) != 1 || holderPIDs(recs[0].Holders)[0] != h.PID {
		t.Fatalf("who --netns /run/netns/%s: want pid %d; %s", nsName, h.PID, res)
	}
	res := bindwatch(t, "wait-free", "--format", "text", arg, "--netns", nsName, "--timeout", "0")
	if res.code != 1 || !strings.Contains(res.stderr, strconv.Itoa(h.PID)) {
		t.Fatalf("wait-free --netns %s: want held by pid %d, exit 1; %s", nsName, h.PID, res)
	}
	if res := bindwatch(t, "wait-free", "--format", "text", arg, "--timeout", "0"); res.code != 0 {
		t.Fatalf("wait-free without --netns: the port is free here; %s", res)
	}
	res, recs := freeRecords(t, arg, "--netns", nsName, "--kill", "--grace", "5s")
	if res.code != 0 || len(recs) != 1 || !recs[0].Free || len(recs[0].Actions) != 1 || recs[0].Actions[0].PID != h.PID {
		t.Fatalf("free --netns %s --kill: want pid %d stopped and the port free; %s", nsName, h.PID, res)
	}
	if err := h.Cmd.Wait(); !killedBy(err, syscall.SIGTERM) {
		t.Errorf("holder ended with %v, want killed by SIGTERM", err)
	}
}

// What --netns cannot name is an error that says what it accepts; with
// --all-netns it is a usage error.
func TestNetnsErrors(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"who", "80", "--netns", "no-such-thing"}, 1, "no process, namespace file, ip netns or running container"},
		{[]string{"who", "80", "--netns", "/etc/passwd"}, 1, "not a namespace file"},
		{[]string{"who", "80", "--netns", "999999999"}, 1, "no process 999999999"},
		{[]string{"free", "80", "--netns", "1", "--all-netns"}, 2, "give one"},
		{[]string{"wait-free", "80", "--netns", "/nonexistent", "--timeout", "0"}, 1, "cannot open it"},
	} {
		start := time.Now()
		res := bindwatch(t, tc.args...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%q: want exit %d and %q (after %s); %s", tc.args, tc.code, tc.want, time.Since(start), res)
		}
	}
}

// In a shared directory uid 65534 plants a FIFO, a symlink to it and a
// symlink to a real namespace, and root is asked to look there with
// --netns PATH: who, free, wait-free and the tracer each refuse at once —
// "not a namespace file" — instead of hanging on the FIFO or following the
// links; /proc/PID/ns/net, the kernel's own link, still works.
func TestNetnsRefusesPlantedFiles(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(testenv.FreePort(t))
	h := testenv.StartHelper(t, "hold tcp 127.0.0.1 "+port)
	real := fmt.Sprintf("/proc/%d/ns/net", h.PID)
	asNobody(t, dir, "mkfifo ns && ln -s ns tofifo && ln -s "+real+" link")
	for _, tc := range []struct{ path, why string }{
		{"ns", "not a namespace file: a FIFO"},
		{"tofifo", "not a namespace file: a symbolic link"},
		{"link", "not a namespace file: a symbolic link"},
	} {
		path := filepath.Join(dir, tc.path)
		for _, args := range [][]string{
			{"who", port},
			{"free", port},
			{"wait-free", port, "--timeout", "0"},
			{"--port", port, "--backend", testenv.Backend()},
		} {
			res := runBindwatchWithin(t, exec.Command(bindwatchBin, append(args, "--netns", path)...), 10*time.Second)
			if res.code == 0 || !strings.Contains(res.stderr, "--netns "+path+": "+path+": "+tc.why) {
				t.Errorf("%q --netns %s: exit %d, stderr %q; want a refusal saying %q", args, tc.path, res.code, res.stderr, tc.why)
			}
		}
	}
	res := runBindwatchWithin(t, exec.Command(bindwatchBin, "who", port, "--netns", real), 10*time.Second)
	if res.code != 0 || !strings.Contains(res.stdout, fmt.Sprintf(`"pid":%d,`, h.PID)) {
		t.Errorf("who --netns %s: %s", real, res)
	}
}
