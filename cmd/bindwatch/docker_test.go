package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/enrich"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/sink"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// realDocker is a dockerd of the test's own, on its own containerd, each
// with its state in the test's temporary directory and a socket of its own.
type realDocker struct {
	dir, sock, dataRoot string
	env                 []string
}

// startDocker starts containerd and dockerd (vfs storage, no iptables, no
// default bridge) and waits until `docker info` answers. Everything it
// starts is stopped when the test ends, containers first; a daemon that
// does not start fails the test.
func startDocker(t *testing.T) *realDocker {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "real docker containers (apt-get install docker.io containerd)", "containerd", "dockerd", "docker", "docker-proxy", "runc")
	dir := t.TempDir()
	d := &realDocker{dir: dir, sock: filepath.Join(dir, "docker.sock"), dataRoot: filepath.Join(dir, "data")}
	d.env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(dir, "client"))
	// Runs after the daemons have stopped: whatever they left mounted
	// under dir (network namespace files) is unmounted before dir goes.
	t.Cleanup(func() { unmountUnder(t, dir) })

	ctdSock := filepath.Join(dir, "containerd.sock")
	ctdConfig := filepath.Join(dir, "containerd.toml")
	// Only what dockerd uses: no CRI plugin (no CNI, no pause image), and
	// the opt plugin's directory (/opt/containerd) in dir.
	config := fmt.Sprintf("version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(dir, "opt"))
	if err := os.WriteFile(ctdConfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, "containerd", "--config", ctdConfig, "--root", filepath.Join(dir, "containerd-root"),
		"--state", filepath.Join(dir, "containerd-state"), "--address", ctdSock)
	testenv.WaitForFile(t, ctdSock, 60*time.Second, func() string { return logTail(dir, "containerd") })
	startDaemon(t, dir, "dockerd", "--storage-driver=vfs", "--iptables=false", "--bridge=none",
		"--data-root", d.dataRoot, "--exec-root", filepath.Join(dir, "exec"), "-H", "unix://"+d.sock,
		"--containerd", ctdSock, "--pidfile", filepath.Join(dir, "dockerd.pid"))
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cmd := exec.Command("docker", "-H", "unix://"+d.sock, "info")
		cmd.Env = d.env
		if cmd.Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer `docker info` within 90s; its log:\n%s", logTail(dir, "dockerd"))
		}
	}
	// Runs before dockerd stops: every container and network goes.
	t.Cleanup(func() {
		if ids := strings.Fields(d.try("ps", "-aq")); len(ids) > 0 {
			d.try(append([]string{"rm", "-f"}, ids...)...)
		}
		if ids := strings.Fields(d.try("network", "ls", "-q", "--filter", "type=custom")); len(ids) > 0 {
			d.try(append([]string{"network", "rm"}, ids...)...)
		}
	})
	return d
}

// startDaemon starts one of the runtime's daemons, logging to dir, and
// stops it (SIGTERM, then SIGKILL after 30 s) when the test ends; then no
// process started from dir may remain (containerd's shims).
func startDaemon(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s (pid %d) did not exit within 3m of SIGTERM: killed", name, cmd.Process.Pid)
			cmd.Process.Kill()
			<-done
		}
		if name == "containerd" {
			for _, pid := range processesUnder(dir) {
				t.Errorf("pid %d (started from %s) outlived containerd: killed", pid, dir)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// processesUnder lists the processes whose command line names dir.
func processesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder unmounts every mount point below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount %s: %v", points[i], err)
		}
	}
}

func logTail(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// try runs a docker command and returns its output, or "" when it failed.
func (d *realDocker) try(args ...string) string {
	cmd := exec.Command("docker", append([]string{"-H", "unix://" + d.sock}, args...)...)
	cmd.Env = d.env
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// run runs a docker command and returns its output; a failure fails the test.
func (d *realDocker) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", append([]string{"-H", "unix://" + d.sock}, args...)...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s\ndockerd's log:\n%s", strings.Join(args, " "), err, out, logTail(d.dir, "dockerd"))
	}
	return strings.TrimSpace(string(out))
}

// importImage makes an image offline, with `docker import` of a tar of a
// root filesystem: busybox-static (with its applets as links) and the
// static test helper.
func (d *realDocker) importImage(t *testing.T, name string) {
	t.Helper()
	testenv.RequireCommand(t, "the containers' image (apt-get install busybox-static)", "busybox")
	busybox, _ := exec.LookPath("busybox")
	rootfs := filepath.Join(d.dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", busybox, filepath.Join(rootfs, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v: %s", busybox, err, out)
	}
	for _, applet := range []string{"sh", "httpd", "nc", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "testhelper"), "github.com/bindwatch/bindwatch/internal/testenv/testhelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the static test helper: %v\n%s", err, out)
	}
	tarball := filepath.Join(d.dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar the rootfs: %v: %s", err, out)
	}
	d.run(t, "import", tarball, name)
}

// waitHeld waits until proto addr:port can no longer be bound.
func waitHeld(t *testing.T, what, addr string, port int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fd, err := testenv.Socket("tcp", addr, testenv.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		err = testenv.Bind(fd, addr, port)
		unix.Close(fd)
		if err == unix.EADDRINUSE {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take %s:%d within 60s (bind: %v)", what, addr, port, err)
		}
	}
}

// Real docker (Debian's docker.io, containerd): a host process fails on a
// port a host-network container holds; on a port docker-proxy publishes
// for a bridge container; and a process in a container fails on a port
// the host holds. The real bindwatch names the containers and images from
// the data root of the test's dockerd ($BINDWATCH_DOCKER_ROOT), tells to
// `docker stop` them, and finds them by name with --netns.
func TestRealDocker(t *testing.T) {
	d := startDocker(t)
	t.Setenv(enrich.DockerRootEnv, d.dataRoot)
	suffix := strconv.Itoa(os.Getpid())
	image := "bindwatch-test/busybox:" + suffix
	d.importImage(t, image)
	hostName, pubName, failName := "bw-dk-host-"+suffix, "bw-dk-pub-"+suffix, "bw-dk-fail-"+suffix
	netName := "bw-dk-net-" + suffix
	hostPort, pubPort, failPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)

	d.run(t, "run", "-d", "--name", hostName, "--network", "host", image, "httpd", "-f", "-p", strconv.Itoa(hostPort))
	waitHeld(t, "container "+hostName, "0.0.0.0", hostPort)
	d.run(t, "network", "create", netName)
	d.run(t, "run", "-d", "--name", pubName, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", pubPort), image, "httpd", "-f", "-p", "80")
	waitHeld(t, "docker-proxy for "+pubName, "127.0.0.1", pubPort)
	testenv.Hold(t, "tcp", "0.0.0.0", failPort, testenv.Opts{})

	failures := map[uint16]*events.Failure{}
	collect := func(lines [][]byte) bool {
		for _, line := range lines {
			var f events.Failure
			if json.Unmarshal(line, &f) == nil && f.Type == events.TypeFailure && f.Port != 0 {
				failures[f.Port] = &f
			}
		}
		return failures[uint16(hostPort)] != nil && failures[uint16(pubPort)] != nil && failures[uint16(failPort)] != nil
	}
	lines := runTraceUntil(t, func() {
		testenv.FailBind(t, "tcp", "0.0.0.0", hostPort, testenv.Opts{}, syscall.EADDRINUSE)
		testenv.FailBind(t, "tcp", "127.0.0.1", pubPort, testenv.Opts{}, syscall.EADDRINUSE)
		// The failer stays (trybind waits for its stdin, kept open by -i)
		// until the test ends, so that its process is there to be named.
		d.run(t, "run", "-d", "-i", "--name", failName, "--network", "host",
			"-e", fmt.Sprintf("BINDWATCH_TEST_HELPER=trybind tcp 0.0.0.0 %d", failPort), "--entrypoint", "/testhelper", image)
	}, collect, "--port", strconv.Itoa(hostPort), "--port", strconv.Itoa(pubPort), "--port", strconv.Itoa(failPort), "--fold", "0")
	collect(lines)
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range lines {
		var doc any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if err := schema.Validate(doc); err != nil {
			t.Errorf("line does not match docs/schema.json: %v\n%s", err, line)
		}
	}
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(50 * time.Millisecond) {
		out := d.run(t, "logs", failName)
		if strings.Contains(out, strconv.Itoa(int(syscall.EADDRINUSE))) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the bind in container %s said %q, want errno %d (EADDRINUSE)", failName, out, syscall.EADDRINUSE)
			break
		}
	}
	want := func(p *events.Process, name, what string) {
		t.Helper()
		c := p.Container
		if c.Runtime != "docker" || c.Name != name || c.Image != image || len(c.ID) != 64 || p.ContainerID != c.ID {
			t.Errorf("%s: container %+v (container_id %q), want docker container %s of image %s", what, c, p.ContainerID, name, image)
		}
	}

	host := failures[uint16(hostPort)]
	if host == nil || len(host.Holders) == 0 || len(host.Holders[0].Processes) == 0 {
		t.Fatalf("no failure with a holder process on port %d in\n%s", hostPort, lines)
	}
	t.Logf("%s", events.Text(host))
	if host.Process.Container != (events.Container{}) {
		t.Errorf("the host process is said to be in a container: %+v", host.Process.Container)
	}
	want(&host.Holders[0].Processes[0], hostName, "holder in a host-network container")
	if stop := "docker stop " + hostName; !strings.Contains(host.Hint, stop) {
		t.Errorf("hint %q does not say %q", host.Hint, stop)
	}

	pub := failures[uint16(pubPort)]
	if pub == nil || len(pub.Holders) == 0 || len(pub.Holders[0].Processes) == 0 {
		t.Fatalf("no failure with a holder process on port %d in\n%s", pubPort, lines)
	}
	t.Logf("%s", events.Text(pub))
	if pub.Cause != events.CauseDockerProxy || pub.Holders[0].Processes[0].Comm != "docker-proxy" {
		t.Errorf("port %d published by docker: cause %q, holder %q; want %s, docker-proxy", pubPort, pub.Cause, pub.Holders[0].Processes[0].Comm, events.CauseDockerProxy)
	}
	if pf := pub.Holders[0].Processes[0].PublishesFor; pf == nil || pf.Name != pubName || pf.Image != image || pf.Runtime != "docker" || len(pf.ID) != 64 {
		t.Errorf("docker-proxy's publishes_for = %+v, want docker container %s of image %s", pf, pubName, image)
	}
	if c := pub.Holders[0].Processes[0].Container; c != (events.Container{}) {
		t.Errorf("docker-proxy, which runs on the host, is said to run in container %+v", c)
	}
	if !strings.Contains(pub.Diagnosis, pubName) || !strings.Contains(pub.Hint, "docker stop "+pubName) {
		t.Errorf("the docker-proxy diagnosis does not name the container it publishes for (%s):\n%s\n%s", pubName, pub.Diagnosis, pub.Hint)
	}

	// As ECS (--format ecs), the proxy's container is in bindwatch.holders.
	b, err := sink.ECS(pub)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("ECS of the docker-proxy failure: %v: %s", err, b)
	}
	holders, _ := field(doc, "bindwatch.holders").([]any)
	if len(holders) == 0 || !strings.Contains(fmt.Sprint(holders[0]), "publishes_for:map[id:") || !strings.Contains(fmt.Sprint(holders[0]), "name:"+pubName) {
		t.Errorf("ECS bindwatch.holders does not carry the proxy's publishes_for: %v", holders)
	}

	fail := failures[uint16(failPort)]
	if fail == nil {
		t.Fatalf("no failure on port %d in\n%s", failPort, lines)
	}
	t.Logf("%s", events.Text(fail))
	want(&fail.Process, failName, "failing process in a container")
	if len(fail.Holders) == 0 || len(fail.Holders[0].Processes) == 0 || fail.Holders[0].Processes[0].PID != os.Getpid() {
		t.Errorf("the holder of port %d is not the test (pid %d): %+v", failPort, os.Getpid(), fail.Holders)
	}

	// Without BINDWATCH_DOCKER_ROOT, bindwatch looks in /var/lib/docker,
	// where this dockerd keeps nothing: the names above came from the
	// data root the test's dockerd was given.
	cmd := exec.Command(bindwatchBin, "who", "80", "--netns", pubName, "--format", "json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, enrich.DockerRootEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no process, namespace file, ip netns or running container") {
		t.Errorf("without $%s, --netns %s was found (%v):\n%s", enrich.DockerRootEnv, pubName, err, out)
	}

	// --netns NAME: the bridge container's own namespace, found by its
	// name in the test's docker state; its httpd holds port 80 there.
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"who", "80", "--netns", pubName, "--format", "json"}, 0},
		{[]string{"free", "80/tcp", "--netns", pubName, "--format", "json"}, -1},
		{[]string{"wait-free", "80/tcp", "--netns", pubName, "--timeout", "1s", "--format", "json"}, -1},
	} {
		cmd := exec.Command(bindwatchBin, c.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, _ := cmd.Output()
		code := cmd.ProcessState.ExitCode()
		t.Logf("bindwatch %s: exit %d\n%s%s", strings.Join(c.args, " "), code, out, stderr.String())
		if code == 2 || (c.code >= 0 && code != c.code) {
			t.Errorf("bindwatch %s exited %d: %s", strings.Join(c.args, " "), code, stderr.String())
		}
		if !strings.Contains(string(out), `"name":"`+pubName+`"`) || !strings.Contains(string(out), `"comm":"httpd"`) {
			t.Errorf("bindwatch %s does not name httpd in container %s:\n%s", strings.Join(c.args, " "), pubName, out)
		}
		if c.args[0] == "wait-free" {
			if code == 0 {
				t.Errorf("wait-free said port 80 is free in %s, where httpd holds it", pubName)
			}
			if !strings.Contains(string(out), "docker stop "+pubName) {
				t.Errorf("wait-free's held record does not say docker stop %s:\n%s", pubName, out)
			}
		}
	}
}
