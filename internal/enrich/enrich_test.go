package enrich

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Container ids of the fixtures in testdata/host, laid out as each runtime
// keeps its state on a Kubernetes node.
const (
	containerdWeb     = "97d2c0c0223571e9bd6b053a230a69d287159fd5af06497581bc29c814056c77"
	containerdSandbox = "85b013213e803c7bc39ff8937f98c8b3b8ba3ee2cf22b5c7f08dfa7dd07f0fc4"
	crioPostgres      = "1f0085769963c9522c970c22e1c3cb7466d9ef1b211e537ef47deb51c04f972e"
	dockerRedis       = "89016fc1ebe735d5d6bfa8fa9b5c0431890483da9035da7f4031b4fd87aff831"
	dockerPlain       = "4fd88b678ecadb93030bb98dfb4733c038f1fa2022c789c9a0f2bcf070a0e0d7"
	logsOnly          = "e5ee06a02b9a47df7218a49b57e4579b40d62dd5242f96472cb97bc5d8645add"
)

func TestParseCgroup(t *testing.T) {
	id := containerdWeb
	for _, tc := range []struct {
		path            string
		runtime, podUID string
		noID            bool
		other           string // the id wanted instead of id
	}{
		// systemd driver
		{path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d9b2a3e_6f1c_4b7a_9e2d_5c8f1a2b3c4d.slice/cri-containerd-" + id + ".scope", runtime: Containerd, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		{path: "/kubepods.slice/kubepods-pod0d9b2a3e_6f1c_4b7a_9e2d_5c8f1a2b3c4d.slice/crio-" + id + ".scope", runtime: CRIO, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		{path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d9b2a3e_6f1c_4b7a_9e2d_5c8f1a2b3c4d.slice/docker-" + id + ".scope", runtime: Docker, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		{path: "/system.slice/docker-" + id + ".scope", runtime: Docker},
		{path: "/machine.slice/libpod-" + id + ".scope", runtime: Podman},
		{path: "/machine.slice/libpod-" + id + ".scope/container", runtime: Podman},
		{path: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope", runtime: Podman},
		// cgroupfs driver
		{path: "/kubepods/burstable/pod0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d/" + id, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		{path: "/kubepods/pod0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d/crio-" + id, runtime: CRIO, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		{path: "/docker/" + id, runtime: Docker},
		{path: "/libpod_parent/libpod-" + id, runtime: Podman},
		// a kubelet's systemd cgroupsPath taken as one directory's name
		{path: "/system.slice/containerd.service/kubepods-besteffort-pod0d9b2a3e_6f1c_4b7a_9e2d_5c8f1a2b3c4d.slice:cri-containerd:" + id, runtime: Containerd, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		// nested: the innermost
		{path: "/docker/" + dockerPlain + "/docker/" + id, runtime: Docker},
		// another runtime: the id alone
		{path: "/system.slice/nerdctl-" + id + ".scope"},
		{path: "/actions_job/" + id},
		// not containers
		{path: "/system.slice/ssh.service", noID: true},
		{path: "/machine.slice/libpod-conmon-" + id + ".scope", noID: true},
		{path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d9b2a3e_6f1c_4b7a_9e2d_5c8f1a2b3c4d.slice/crio-conmon-" + id + ".scope", noID: true, podUID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
		{path: "/docker/" + dockerPlain + "/machine.slice/libpod-conmon-" + id + ".scope", noID: true, other: dockerPlain, runtime: Docker}, // conmon in a docker container: that container's
		{path: "/x/" + id + "0", noID: true}, // 65 hex digits: not an id
		{path: "/", noID: true},
		{path: "", noID: true},
	} {
		f := parseCgroup(tc.path)
		wantID := id
		if tc.noID {
			wantID = tc.other
		}
		if f.id != wantID || f.runtime != tc.runtime || f.podUID != tc.podUID {
			t.Errorf("parseCgroup(%q) = %+v, want id %q runtime %q pod uid %q", tc.path, f, wantID, tc.runtime, tc.podUID)
		}
	}
}

// On a v1 or hybrid host the container shows in the v1 hierarchies even
// when the unified one says "/".
func TestBestCgroupPath(t *testing.T) {
	hybrid := "12:pids:/docker/" + dockerPlain + "\n1:name=systemd:/docker/" + dockerPlain + "\n0::/\n"
	if got := bestCgroupPath(hybrid); got != "/docker/"+dockerPlain {
		t.Errorf("hybrid: got %q", got)
	}
	v2 := "0::/system.slice/docker-" + dockerPlain + ".scope\n"
	if got := bestCgroupPath(v2); got != "/system.slice/docker-"+dockerPlain+".scope" {
		t.Errorf("v2: got %q", got)
	}
	if got := bestCgroupPath("0::/user.slice\n"); got != "" {
		t.Errorf("no container: got %q", got)
	}
}

// Each runtime's real on-disk layout for a Kubernetes pod names the pod
// and the container, reached from the cgroup path each runtime makes.
func TestNamesFromRuntimeState(t *testing.T) {
	n := New(Options{Root: "testdata/host", CgroupRoot: t.TempDir()})
	for _, tc := range []struct {
		name   string
		cgroup string
		want   events.Container
		pod    events.Pod
		text   string
	}{
		{
			name:   "containerd, systemd driver",
			cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d9b2a3e_6f1c_4b7a_9e2d_5c8f1a2b3c4d.slice/cri-containerd-" + containerdWeb + ".scope",
			want:   events.Container{Runtime: Containerd, ID: containerdWeb, Name: "web", Image: "docker.io/library/nginx:1.25"},
			pod:    events.Pod{Namespace: "shop", Name: "web-7d9f-abc", UID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
			text:   "container web (pod shop/web-7d9f-abc)",
		},
		{
			name:   "containerd pod sandbox (pause), cgroupfs driver",
			cgroup: "/kubepods/burstable/pod0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d/" + containerdSandbox,
			want:   events.Container{Runtime: Containerd, ID: containerdSandbox},
			pod:    events.Pod{Namespace: "shop", Name: "web-7d9f-abc", UID: "0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d"},
			text:   "container 85b013213e80 (pod shop/web-7d9f-abc)",
		},
		{
			name:   "CRI-O, cgroupfs driver",
			cgroup: "/kubepods/pod7a1f3c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b/crio-" + crioPostgres,
			want:   events.Container{Runtime: CRIO, ID: crioPostgres, Name: "postgres", Image: "docker.io/library/postgres:16"},
			pod:    events.Pod{Namespace: "data", Name: "db-0", UID: "7a1f3c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b"},
			text:   "container postgres (pod data/db-0)",
		},
		{
			name:   "docker with cri-dockerd, cgroupfs driver on cgroup v1",
			cgroup: "/kubepods/burstable/podc3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f/" + dockerRedis,
			want:   events.Container{Runtime: Docker, ID: dockerRedis, Name: "redis", Image: "redis@sha256:ca8ce73eb21a18bacbd0a31708c4f45b9cc0f2bac070ad37a7772ce12b499707"},
			pod:    events.Pod{Namespace: "shop", Name: "cache-5c4b-xyz", UID: "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"},
			text:   "container redis (pod shop/cache-5c4b-xyz)",
		},
		{
			name:   "docker, systemd driver, no Kubernetes",
			cgroup: "/system.slice/docker-" + dockerPlain + ".scope",
			want:   events.Container{Runtime: Docker, ID: dockerPlain, Name: "billing-api", Image: "registry.example.com/billing/api:2.4.1"},
			text:   "container billing-api",
		},
		{
			name:   "podman's conmon watches a container from outside it",
			cgroup: "/machine.slice/libpod-conmon-" + dockerPlain + ".scope",
		},
		{
			name:   "kubelet log directories only (runtime state not readable)",
			cgroup: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5e6f7a8b_9c0d_4e1f_a2b3_c4d5e6f7a8b9.slice/cri-containerd-" + logsOnly + ".scope",
			want:   events.Container{Runtime: Containerd, ID: logsOnly, Name: "node-exporter"},
			pod:    events.Pod{Namespace: "monitoring", Name: "node-exporter-q2w8z", UID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"},
			text:   "container node-exporter (pod monitoring/node-exporter-q2w8z)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := events.Process{Cgroup: tc.cgroup}
			n.Process(&p)
			if p.Container != tc.want || p.Pod != tc.pod || p.ContainerID != tc.want.ID {
				t.Errorf("got %+v %+v (container_id %q)\nwant %+v %+v", p.Container, p.Pod, p.ContainerID, tc.want, tc.pod)
			}
			if got := events.ContainerText(&p); got != tc.text {
				t.Errorf("text %q, want %q", got, tc.text)
			}
		})
	}
}

// A process outside any container gets nothing, and is not looked up again.
func TestNotAContainer(t *testing.T) {
	n := New(Options{Root: "testdata/host", CgroupRoot: t.TempDir()})
	p := events.Process{Cgroup: "/system.slice/nginx.service"}
	n.Process(&p)
	if p.Container != (events.Container{}) || p.Pod != (events.Pod{}) || events.ContainerText(&p) != "" {
		t.Errorf("got %+v %+v", p.Container, p.Pod)
	}
}

// A container created after its cgroup was first seen is named on a later
// look, once the retry window has passed; a named one is cached.
func TestNewContainerIsLookedUpAgain(t *testing.T) {
	root := t.TempDir()
	n := New(Options{Root: root, CgroupRoot: t.TempDir()})
	p := events.Process{Cgroup: "/system.slice/docker-" + dockerPlain + ".scope"}
	n.Process(&p)
	if p.Container.Name != "" {
		t.Fatalf("named before the state exists: %+v", p.Container)
	}
	copyFile(t, "testdata/host/var/lib/docker/containers/"+dockerPlain+"/config.v2.json", filepath.Join(root, "var/lib/docker/containers", dockerPlain, "config.v2.json"))
	n.mu.Lock()
	e := n.byPath[p.Cgroup]
	e.at = e.at.Add(-retryAfter)
	n.byPath[p.Cgroup] = e
	n.mu.Unlock()
	p = events.Process{Cgroup: p.Cgroup}
	n.Process(&p)
	if p.Container.Name != "billing-api" {
		t.Fatalf("not named once the state exists: %+v", p.Container)
	}
	os.RemoveAll(filepath.Join(root, "var"))
	p = events.Process{Cgroup: p.Cgroup}
	n.Process(&p)
	if p.Container.Name != "billing-api" {
		t.Errorf("a named container was looked up again: %+v", p.Container)
	}
}

// State files are read as root from directories named after containers: a
// planted symbolic link is not followed (not for the file, not for a
// directory on the way), and a file over its limit is not read.
func TestHostileState(t *testing.T) {
	root := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret.json")
	os.WriteFile(secret, []byte(`{"Name":"/leaked","Config":{"Image":"secret"}}`), 0o600)
	ids := []string{strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)}
	dir := filepath.Join(root, "var/lib/docker/containers")
	os.MkdirAll(filepath.Join(dir, ids[0]), 0o755)
	must(t, os.Symlink(secret, filepath.Join(dir, ids[0], "config.v2.json")))
	must(t, os.Symlink(filepath.Dir(secret), filepath.Join(dir, ids[1])))
	os.MkdirAll(filepath.Join(dir, ids[2]), 0o755)
	big := `{"Name":"/big","Config":{"Image":"` + strings.Repeat("x", maxConfigSize) + `"}}`
	must(t, os.WriteFile(filepath.Join(dir, ids[2], "config.v2.json"), []byte(big), 0o644))
	// The same planted file, but named as id[1]'s config, proves the link
	// is what is refused.
	must(t, os.Rename(secret, filepath.Join(filepath.Dir(secret), "config.v2.json")))
	n := New(Options{Root: root, CgroupRoot: t.TempDir()})
	for _, id := range ids {
		p := events.Process{Cgroup: "/system.slice/docker-" + id + ".scope"}
		n.Process(&p)
		if p.Container.Name != "" || p.Container.Image != "" {
			t.Errorf("read through a link or past the limit: %+v", p.Container)
		}
		if p.Container.ID != id || p.Container.Runtime != Docker {
			t.Errorf("lost what the cgroup path says: %+v", p.Container)
		}
	}
}

// Names are whatever the container's creator chose; the text form puts
// them on one line.
func TestHostileNamesText(t *testing.T) {
	root := t.TempDir()
	id := strings.Repeat("d", 64)
	cfg := `{"Name":"/evil\n12:00:00.000 EADDRINUSE fake line","Config":{"Image":"x","Labels":{"io.kubernetes.pod.name":"p\u001b[31m","io.kubernetes.pod.namespace":"ns","io.kubernetes.container.name":"c\rd"}}}`
	os.MkdirAll(filepath.Join(root, "var/lib/docker/containers", id), 0o755)
	must(t, os.WriteFile(filepath.Join(root, "var/lib/docker/containers", id, "config.v2.json"), []byte(cfg), 0o644))
	n := New(Options{Root: root, CgroupRoot: t.TempDir()})
	p := events.Process{Cgroup: "/docker/" + id}
	n.Process(&p)
	if p.Pod.Name != "p\x1b[31m" || p.Container.Name != "c\rd" {
		t.Fatalf("JSON fields must keep the bytes as found: %+v %+v", p.Container, p.Pod)
	}
	text := events.ContainerText(&p)
	if strings.ContainsAny(text, "\n\r\x1b") {
		t.Errorf("control characters in the text form: %q", text)
	}
}

// A process that has exited is named from the cgroup id the kernel
// captured, looked up in the cgroup v2 hierarchy.
func TestCgroupIDOfExitedProcess(t *testing.T) {
	cg := t.TempDir()
	dir := filepath.Join(cg, "system.slice", "docker-"+dockerPlain+".scope")
	must(t, os.MkdirAll(dir, 0o755))
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := New(Options{Root: "testdata/host", CgroupRoot: cg})
	p := events.Process{PID: -1, CgroupID: inode(st)}
	n.Process(&p)
	if p.Container.Name != "billing-api" {
		t.Errorf("got %+v", p.Container)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	must(t, os.WriteFile(to, b, 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A docker-proxy (root's) is given the running container whose port it
// publishes, from the state under dockerd's data root (Options.DockerRoot,
// else $BINDWATCH_DOCKER_ROOT): not a stopped container that had the same
// address, nor one publishing the container port on another host port.
func TestDockerPublisher(t *testing.T) {
	root := t.TempDir()
	write := func(id, name string, running bool, ip, hostPort string) {
		t.Helper()
		dir := filepath.Join(root, "srv/docker/containers", id)
		must(t, os.MkdirAll(dir, 0o755))
		cfg := fmt.Sprintf(`{"ID":%q,"Name":"/%s","Config":{"Image":"web:1"},"State":{"Running":%t},
			"NetworkSettings":{"Networks":{"appnet":{"IPAddress":%q}},"Ports":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":%q}]}}}`,
			id, name, running, ip, hostPort)
		must(t, os.WriteFile(filepath.Join(dir, "config.v2.json"), []byte(cfg), 0o644))
	}
	write(strings.Repeat("1", 64), "stopped-web", false, "172.18.0.2", "8080")
	write(strings.Repeat("2", 64), "other-port", true, "172.18.0.2", "9090")
	write(strings.Repeat("3", 64), "web", true, "172.18.0.2", "8080")
	proxy := func() events.Process {
		return events.Process{Comm: "docker-proxy", Cgroup: "/system.slice/docker.service",
			Cmdline: []string{"/usr/sbin/docker-proxy", "-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port", "8080", "-container-ip", "172.18.0.2", "-container-port", "80"}}
	}
	p := proxy()
	New(Options{Root: root, DockerRoot: "/srv/docker", CgroupRoot: t.TempDir()}).Process(&p)
	want := events.Container{Runtime: Docker, ID: strings.Repeat("3", 64), Name: "web", Image: "web:1"}
	if p.PublishesFor == nil || *p.PublishesFor != want {
		t.Errorf("publishes_for = %+v, want %+v", p.PublishesFor, want)
	}
	if p.Container != (events.Container{}) {
		t.Errorf("the proxy, on the host, is said to run in %+v", p.Container)
	}
	t.Setenv(DockerRootEnv, "/srv/docker")
	p = proxy()
	New(Options{Root: root, CgroupRoot: t.TempDir()}).Process(&p)
	if p.PublishesFor == nil || *p.PublishesFor != want {
		t.Errorf("with $%s: publishes_for = %+v, want %+v", DockerRootEnv, p.PublishesFor, want)
	}
	p = proxy()
	p.UID = 1000 // anyone can name a process docker-proxy
	New(Options{Root: root, CgroupRoot: t.TempDir()}).Process(&p)
	if p.PublishesFor != nil {
		t.Errorf("a user's docker-proxy was given a container: %+v", p.PublishesFor)
	}
	p = proxy()
	p.Cmdline[7] = "-container-ip=172.18.0.9"
	p.Cmdline = append(p.Cmdline[:8], p.Cmdline[9:]...)
	New(Options{Root: root, CgroupRoot: t.TempDir()}).Process(&p)
	if p.PublishesFor != nil {
		t.Errorf("a proxy for an address no running container has was given %+v", p.PublishesFor)
	}
}

// A containerd with a --state of its own ($BINDWATCH_CONTAINERD_STATE):
// its task bundles name the pod; without the variable they are not found.
func TestContainerdStateDir(t *testing.T) {
	root := t.TempDir()
	rel := "run/containerd/io.containerd.runtime.v2.task/k8s.io/" + containerdWeb + "/config.json"
	copyFile(t, "testdata/host/"+rel, filepath.Join(root, "srv/ctd-state/io.containerd.runtime.v2.task/k8s.io", containerdWeb, "config.json"))
	cgroup := "/kubepods/besteffort/pod0d9b2a3e-6f1c-4b7a-9e2d-5c8f1a2b3c4d/" + containerdWeb
	p := events.Process{Cgroup: cgroup}
	New(Options{Root: root, CgroupRoot: t.TempDir()}).Process(&p)
	if p.Container.Name != "" || p.Pod.Name != "" {
		t.Errorf("named without the state directory: %+v %+v", p.Container, p.Pod)
	}
	t.Setenv(ContainerdStateEnv, "/srv/ctd-state")
	p = events.Process{Cgroup: cgroup}
	New(Options{Root: root, CgroupRoot: t.TempDir()}).Process(&p)
	if p.Container.Runtime != Containerd || p.Container.Name != "web" || p.Pod.Name == "" || p.Pod.UID == "" {
		t.Errorf("with $%s: got %+v %+v", ContainerdStateEnv, p.Container, p.Pod)
	}
}
