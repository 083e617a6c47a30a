package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/bindwatch/bindwatch/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// realCRI is a containerd of the test's own with its CRI plugin, driven
// through the CRI API as kubelet drives it, its state in the test's
// temporary directory and a socket of its own.
type realCRI struct {
	dir, sock, state string
	rt               cri.RuntimeServiceClient
}

// startCRI starts containerd with the CRI plugin (native snapshotter, the
// distribution's CNI plugins with a loopback-only network, the sandbox
// image pause) and waits until the CRI plugin answers Version. The
// sandbox image is imported first from a busybox-static rootfs.
func startCRI(t *testing.T, pause string) *realCRI {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "real containerd through CRI (apt-get install containerd containernetworking-plugins busybox-static)", "containerd", "ctr", "runc", "busybox", "ip")
	testenv.RequireCommand(t, "the CNI plugins for containerd's CRI (apt-get install containernetworking-plugins)", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local")
	dir := t.TempDir()
	c := &realCRI{dir: dir, sock: filepath.Join(dir, "containerd.sock"), state: filepath.Join(dir, "containerd-state")}
	t.Cleanup(func() { unmountUnder(t, dir) })
	cniConf := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		t.Fatal(err)
	}
	// A pod with its own network namespace needs an eth0 with an address
	// (containerd's CRI asks the CNI result for it): a bridge of the
	// test's own, with no address on the host (no route changes there),
	// and host-local's leases in dir. It goes when containerd has stopped.
	bridge := fmt.Sprintf("bwcri%d", os.Getpid()%100000)
	conf := fmt.Sprintf(`{"cniVersion":"0.4.0","name":"bw-cri","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.213.%d.0/24"}]]}}]}`,
		bridge, filepath.Join(dir, "cni-leases"), os.Getpid()%250)
	if err := os.WriteFile(filepath.Join(cniConf, "10-bw-cri.conflist"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
			if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v: %s", bridge, err, out)
			}
		}
	})
	config := fmt.Sprintf(`version = 2
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # The pause container's oom_score_adj (-998) is below the test's: a
  # process without CAP_SYS_RESOURCE (CI's sandbox) may not lower it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(dir, "opt"), pause, cniConf)
	ctdConfig := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(ctdConfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, "containerd", "--config", ctdConfig, "--root", filepath.Join(dir, "containerd-root"),
		"--state", c.state, "--address", c.sock)
	testenv.WaitForFile(t, c.sock, 60*time.Second, func() string { return logTail(dir, "containerd") })
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.rt = cri.NewRuntimeServiceClient(conn)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.rt.Version(ctx, &cri.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd's CRI plugin did not answer Version within 60s (%v); its log:\n%s", err, logTail(dir, "containerd"))
		}
	}
	c.importImage(t, pause)
	// Runs before containerd stops: every pod goes, as kubelet removes them.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pods, err := c.rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
		if err != nil {
			t.Errorf("list pods: %v", err)
			return
		}
		for _, p := range pods.Items {
			if _, err := c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
				t.Errorf("stop pod %s: %v", p.Metadata.Name, err)
			}
			if _, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
				t.Errorf("remove pod %s: %v", p.Metadata.Name, err)
			}
		}
	})
	return c
}

// importImage imports, with `ctr -n k8s.io images import`, an image in
// docker's archive format made here: one layer, busybox-static with its
// applets and the static test helper; its entrypoint sleeps (the pause
// container's job).
func (c *realCRI) importImage(t *testing.T, name string) {
	t.Helper()
	busybox, _ := exec.LookPath("busybox")
	helper := filepath.Join(c.dir, "testhelper")
	build := exec.Command("go", "build", "-o", helper, "github.com/bindwatch/bindwatch/internal/testenv/testhelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the static test helper: %v\n%s", err, out)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	add := func(name, src string, mode int64) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir})
	add("bin/busybox", busybox, 0o755)
	add("testhelper", helper, 0o755)
	for _, applet := range []string{"sh", "httpd", "nc", "sleep"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	diff := sha256.Sum256(layer.Bytes())
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/bin/sleep", "2147483647"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": []string{"layer.tar"}}})
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	for _, f := range []struct {
		name string
		b    []byte
	}{{"layer.tar", layer.Bytes()}, {"config.json", cfg}, {"manifest.json", manifest}} {
		aw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.b)), Typeflag: tar.TypeReg})
		aw.Write(f.b)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(c.dir, "image.tar")
	if err := os.WriteFile(file, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ctr", "--address", c.sock, "-n", "k8s.io", "images", "import", "--snapshotter", "native", file).CombinedOutput(); err != nil {
		t.Fatalf("ctr images import %s: %v\n%s\ncontainerd's log:\n%s", name, err, out, logTail(c.dir, "containerd"))
	}
}

// pod runs a pod sandbox, as kubelet does, and returns its id and config.
func (c *realCRI) pod(t *testing.T, ns, name, uid string, hostNet bool) (string, *cri.PodSandboxConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sandbox := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: ns, Uid: uid},
		LogDirectory: filepath.Join(c.dir, "pods", uid),
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent:    "/kubepods/besteffort/pod" + uid,
			SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: &cri.NamespaceOption{Network: netMode(hostNet)}},
		},
	}
	run, err := c.rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: sandbox})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v\ncontainerd's log:\n%s", ns, name, err, logTail(c.dir, "containerd"))
	}
	return run.PodSandboxId, sandbox
}

func netMode(hostNet bool) cri.NamespaceMode {
	if hostNet {
		return cri.NamespaceMode_NODE
	}
	return cri.NamespaceMode_POD
}

// container creates and starts a container in a pod, as kubelet does;
// with stdin, its stdin stays open (kubelet's stdin: true).
func (c *realCRI) container(t *testing.T, podID string, sandbox *cri.PodSandboxConfig, name, image string, cmd, env []string, stdin bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var kv []*cri.KeyValue
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		kv = append(kv, &cri.KeyValue{Key: k, Value: []byte(v)})
	}
	hostNet := sandbox.Linux.SecurityContext.NamespaceOptions.Network == cri.NamespaceMode_NODE
	created, err := c.rt.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId:  podID,
		SandboxConfig: sandbox,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: name},
			Image:    &cri.ImageSpec{Image: image},
			Command:  cmd,
			Envs:     kv,
			Stdin:    stdin,
			LogPath:  name + ".log",
			Linux:    &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{NamespaceOptions: &cri.NamespaceOption{Network: netMode(hostNet)}}},
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer %s in %s/%s: %v\ncontainerd's log:\n%s", name, sandbox.Metadata.Namespace, sandbox.Metadata.Name, err, logTail(c.dir, "containerd"))
	}
	if _, err := c.rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s in %s/%s: %v\ncontainerd's log:\n%s", name, sandbox.Metadata.Namespace, sandbox.Metadata.Name, err, logTail(c.dir, "containerd"))
	}
}

// Real containerd through its CRI plugin, driven as kubelet drives it: a
// hostNetwork pod's container holds a port a host process fails on,
// another container of that pod fails on a port the host holds, and a
// pod with its own network namespace runs httpd on port 80 there. The real
// bindwatch names the pod (namespace, name, uid) and container from
// containerd's own state ($BINDWATCH_CONTAINERD_STATE), tells to
// `kubectl -n NS delete pod NAME`, and finds the pod's container by
// NS/POD/CONTAINER with --netns.
func TestRealContainerdCRI(t *testing.T) {
	suffix := strconv.Itoa(os.Getpid())
	image := "registry.bindwatch.test/busybox:" + suffix
	c := startCRI(t, image)
	t.Setenv(enrich.ContainerdStateEnv, c.state)
	ns := "bw-ns-" + suffix
	hostPod, netPod := "bw-host-"+suffix, "bw-net-"+suffix
	hostUID, netUID := "0d9b2a3e-6f1c-4b7a-9e2d-"+fmt.Sprintf("%012d", os.Getpid()), "5e6f7a8b-9c0d-4e1f-a2b3-"+fmt.Sprintf("%012d", os.Getpid())
	hostPort := testenv.FreePort(t)

	failPort := testenv.FreePort(t)
	hostID, hostSandbox := c.pod(t, ns, hostPod, hostUID, true)
	c.container(t, hostID, hostSandbox, "web", image, []string{"httpd", "-f", "-p", strconv.Itoa(hostPort)}, nil, false)
	waitHeld(t, "pod "+ns+"/"+hostPod, "0.0.0.0", hostPort)
	netID, netSandbox := c.pod(t, ns, netPod, netUID, false)
	c.container(t, netID, netSandbox, "inner", image, []string{"httpd", "-f", "-p", "80"}, nil, false)
	testenv.Hold(t, "tcp", "0.0.0.0", failPort, testenv.Opts{})

	failures := map[int]*events.Failure{}
	collect := func(lines [][]byte) bool {
		for _, line := range lines {
			var f events.Failure
			if json.Unmarshal(line, &f) == nil && f.Type == events.TypeFailure && f.Port != 0 {
				failures[int(f.Port)] = &f
			}
		}
		return failures[hostPort] != nil && failures[failPort] != nil
	}
	lines := runTraceUntil(t, func() {
		testenv.FailBind(t, "tcp", "0.0.0.0", hostPort, testenv.Opts{}, syscall.EADDRINUSE)
		// The failer stays (trybind waits for its stdin, kept open) until
		// the test ends, so that its process is there to be named.
		c.container(t, hostID, hostSandbox, "failer", image, []string{"/testhelper"},
			[]string{fmt.Sprintf("BINDWATCH_TEST_HELPER=trybind tcp 0.0.0.0 %d", failPort)}, true)
	}, collect, "--port", strconv.Itoa(hostPort), "--port", strconv.Itoa(failPort), "--fold", "0")
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
	fail := failures[hostPort]
	if fail == nil || len(fail.Holders) == 0 || len(fail.Holders[0].Processes) == 0 {
		t.Fatalf("no failure with a holder process on port %d in\n%s", hostPort, lines)
	}
	t.Logf("%s", events.Text(fail))
	h := fail.Holders[0].Processes[0]
	if h.Container.Runtime != enrich.Containerd || h.Container.Name != "web" || len(h.Container.ID) != 64 || h.Container.Image != image {
		t.Errorf("holder's container %+v, want containerd container web of image %s", h.Container, image)
	}
	if h.Pod != (events.Pod{Namespace: ns, Name: hostPod, UID: hostUID}) {
		t.Errorf("holder's pod %+v, want %s/%s uid %s", h.Pod, ns, hostPod, hostUID)
	}
	if fix := "kubectl -n " + ns + " delete pod " + hostPod; !strings.Contains(fail.Hint, fix) {
		t.Errorf("hint %q does not say %q", fail.Hint, fix)
	}

	inPod := failures[failPort]
	if inPod == nil {
		t.Fatalf("no failure on port %d in\n%s", failPort, lines)
	}
	t.Logf("%s", events.Text(inPod))
	if p := inPod.Process; p.Container.Runtime != enrich.Containerd || p.Container.Name != "failer" || p.Pod != (events.Pod{Namespace: ns, Name: hostPod, UID: hostUID}) {
		t.Errorf("failing process: container %+v pod %+v, want containerd container failer in pod %s/%s uid %s", p.Container, p.Pod, ns, hostPod, hostUID)
	}
	if len(inPod.Holders) == 0 || len(inPod.Holders[0].Processes) == 0 || inPod.Holders[0].Processes[0].PID != os.Getpid() {
		t.Errorf("the holder of port %d is not the test (pid %d): %+v", failPort, os.Getpid(), inPod.Holders)
	}

	// --netns NS/POD/CONTAINER: the pod's own network namespace, where
	// its httpd holds port 80.
	target := ns + "/" + netPod + "/inner"
	waitFor := time.Now().Add(60 * time.Second)
	for _, a := range [][]string{
		{"who", "80", "--netns", target, "--format", "json"},
		{"free", "80/tcp", "--netns", target, "--format", "json"},
		{"wait-free", "80/tcp", "--netns", target, "--timeout", "1s", "--format", "json"},
	} {
		var out []byte
		var stderr strings.Builder
		code := 0
		for {
			cmd := exec.Command(bindwatchBin, a...)
			stderr.Reset()
			cmd.Stderr = &stderr
			out, _ = cmd.Output()
			code = cmd.ProcessState.ExitCode()
			if strings.Contains(string(out), `"comm":"httpd"`) || time.Now().After(waitFor) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("bindwatch %s: exit %d\n%s%s", strings.Join(a, " "), code, out, stderr.String())
		if code == 2 {
			t.Errorf("bindwatch %s exited %d: %s", strings.Join(a, " "), code, stderr.String())
		}
		if !strings.Contains(string(out), `"comm":"httpd"`) || !strings.Contains(string(out), `"name":"`+netPod+`"`) || !strings.Contains(string(out), `"uid":"`+netUID+`"`) {
			t.Errorf("bindwatch %s does not name httpd in pod %s:\n%s", strings.Join(a, " "), target, out)
		}
		if a[0] == "wait-free" && code == 0 {
			t.Errorf("wait-free said port 80 is free in %s, where httpd holds it", target)
		}
	}
}
