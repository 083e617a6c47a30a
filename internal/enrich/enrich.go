// Package enrich names the container and Kubernetes pod a process runs in,
// without asking any API server: the runtime and container id from its
// cgroup path (docker, containerd, CRI-O and podman under the systemd and
// cgroupfs drivers; the kubelet's pod<uid> cgroups), the names and image
// from the runtime's state on disk (docker's and podman's container
// records, the OCI bundle annotations of containerd's and CRI-O's CRI
// plugins) and the kubelet's log directory names. Results are cached by
// cgroup: a container is looked up once, when its cgroup first shows up.
//
// Everything read here was named by whoever created the container:
// hostile bytes, read as root, from directories whose entries are named
// after containers. No link is followed under a state directory, every
// file read is bounded, and the text forms escape what they print
// (events.ContainerText).
package enrich

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// retryAfter is how long a cgroup whose container could not be named is
// remembered so: a runtime writes its state around the moment it starts
// the container's first process, so an early look may come too soon.
const retryAfter = 2 * time.Second

// maxCached bounds the cache; past it, it starts over.
const maxCached = 8192

// Options configure a Namer.
type Options struct {
	// Root is where the host's root directory is seen: "/" (the default),
	// or the directory the host's state directories are mounted under
	// when bindwatch runs in a container without them at their own paths.
	Root string
	// CgroupRoot is the cgroup v2 mount, where a cgroup id is looked up
	// when a process has exited; "" finds it in /proc/self/mountinfo.
	CgroupRoot string
	// DockerRoot is dockerd's --data-root (its "data-root" in
	// daemon.json), under Root; "" takes $BINDWATCH_DOCKER_ROOT, and
	// without it /var/lib/docker.
	DockerRoot string
	// ContainerdState is a containerd's --state directory (its "state"
	// in config.toml), under Root, looked at before containerd's default
	// ones; "" takes $BINDWATCH_CONTAINERD_STATE.
	ContainerdState string
}

// ContainerdStateEnv names the environment variable that tells where a
// containerd keeps its task bundles when it runs with another --state.
const ContainerdStateEnv = "BINDWATCH_CONTAINERD_STATE"

// containerdTaskDirs are the task bundle directories to look in, relative
// to root: those of a containerd with --state opt (or
// $BINDWATCH_CONTAINERD_STATE) first, then the default ones.
func containerdTaskDirs(opt string) []string {
	if opt == "" {
		opt = os.Getenv(ContainerdStateEnv)
	}
	if opt == "" || !filepath.IsAbs(opt) {
		return containerdTasks
	}
	state := strings.TrimPrefix(filepath.Clean(opt), "/")
	return append([]string{state + "/io.containerd.runtime.v2.task", state + "/io.containerd.runtime.v1.linux"}, containerdTasks...)
}

// DockerRootEnv names the environment variable that tells where dockerd
// keeps its state when it runs with another --data-root.
const DockerRootEnv = "BINDWATCH_DOCKER_ROOT"

// dockerRoot is the data root Options and the environment name.
func dockerRoot(opt string) string {
	if opt == "" {
		opt = os.Getenv(DockerRootEnv)
	}
	if opt == "" || !filepath.IsAbs(opt) {
		opt = "/var/lib/docker"
	}
	return filepath.Clean(opt)
}

// Namer names containers and pods. It is safe for concurrent use.
type Namer struct {
	root      string
	dockerDir string   // docker's containers directory, relative to root
	taskDirs  []string // containerd's task bundle directories, relative to root
	storage   storageIndex
	ids       cgroupIndex

	mu     sync.Mutex
	byPath map[string]named
}

// named is one cgroup's result.
type named struct {
	container events.Container
	pod       events.Pod
	at        time.Time
	final     bool // named, or not a container: not looked up again
}

// New returns a Namer. It reads nothing until asked.
func New(opts Options) *Namer {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	return &Namer{root: root, dockerDir: strings.TrimPrefix(dockerRoot(opts.DockerRoot), "/") + "/containers", taskDirs: containerdTaskDirs(opts.ContainerdState), byPath: make(map[string]named), ids: cgroupIndex{mount: opts.CgroupRoot}}
}

// Process fills p.Container and p.Pod (and p.ContainerID, the same id as
// p.Container.ID: parseCgroup is the one rule for both), and p.Unit
// (UnitOf), for a process
// whose details resolve.FillProcess has read: from its cgroup path, or,
// when that names no container, from its cgroup id (a process that has
// exited) or its cgroup v1 paths (a v1 or hybrid host).
//
// For a docker-proxy (root's), it also fills p.PublishesFor: the container
// whose port the proxy publishes, from docker's state.
func (n *Namer) Process(p *events.Process) {
	if p.Comm == "docker-proxy" && p.UID == 0 && p.PublishesFor == nil {
		p.PublishesFor = n.dockerPublisher(p.Cmdline)
	}
	path := p.Cgroup
	if (path == "" || parseCgroup(path).id == "") && p.CgroupID != 0 {
		if byID := n.ids.path(p.CgroupID); byID != "" {
			path = byID
		}
	}
	var procCgroup string
	if parseCgroup(path).id == "" && p.PID > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cgroup"); err == nil {
			procCgroup = string(b)
			if v1 := bestCgroupPath(procCgroup); v1 != "" {
				path = v1
			}
		}
	}
	if p.Unit == "" {
		unitPath := p.Cgroup
		if unitPath == "" {
			unitPath = path
		}
		p.Unit, p.UnitManager = UnitOf(unitPath)
		if p.Unit == "" && (unitPath == "" || unitPath == "/") {
			// A v1 or hybrid host where the unified path says nothing.
			p.Unit, p.UnitManager = UnitOf(systemdV1Path(procCgroup))
		}
	}
	if path == "" {
		return
	}
	r := n.lookup(path)
	p.Container, p.Pod = r.container, r.pod
	p.ContainerID = r.container.ID // container_id: the same id, by the same rule
}

// lookup returns the cached result for a cgroup path, looking it up when
// it is new, or when it was not named and is worth another look.
func (n *Namer) lookup(path string) named {
	now := time.Now()
	n.mu.Lock()
	r, ok := n.byPath[path]
	n.mu.Unlock()
	if ok && (r.final || now.Sub(r.at) < retryAfter) {
		return r
	}
	r = n.name(path)
	r.at = now
	n.mu.Lock()
	if len(n.byPath) >= maxCached {
		clear(n.byPath)
	}
	n.byPath[path] = r
	n.mu.Unlock()
	return r
}

// name looks up one cgroup's container and pod.
func (n *Namer) name(path string) named {
	f := parseCgroup(path)
	var r named
	if f.id == "" && f.podUID == "" {
		r.final = true // not a container
		return r
	}
	r.container.ID, r.container.Runtime = f.id, f.runtime
	if f.id != "" {
		n.fromState(f, &r.container, &r.pod)
	}
	n.fromLogs(f, &r.container, &r.pod)
	if r.pod.UID == "" {
		r.pod.UID = f.podUID
	}
	r.final = r.container.Name != "" || r.pod.Name != ""
	return r
}

// path is rel under the host root.
func (n *Namer) path(rel string) string { return filepath.Join(n.root, rel) }

// listing names the entries of a state directory (nil when there is none).
func (n *Namer) listing(rel string) []string {
	names, _ := listDir(n.path(rel))
	return names
}

// cgroupIndex maps cgroup ids to paths by walking the cgroup v2 hierarchy,
// where a cgroup's id is its directory's inode number. It walks again on
// a miss, at most once a second: a new cgroup is found when it appears.
type cgroupIndex struct {
	mu     sync.Mutex
	mount  string
	found  bool // mount looked for
	walked time.Time
	byID   map[uint64]string
}

// Walk limits: a host with thousands of containers has tens of thousands
// of cgroups at most.
const (
	maxCgroupDepth = 16
	maxCgroups     = 200000
)

func (x *cgroupIndex) path(id uint64) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p, ok := x.byID[id]; ok {
		return p
	}
	if !x.found {
		x.found = true
		if x.mount == "" {
			x.mount = cgroup2Mount()
		}
	}
	if x.mount == "" || time.Since(x.walked) < time.Second {
		return ""
	}
	x.walked = time.Now()
	x.byID = make(map[uint64]string)
	x.walk(x.mount, "/", 0)
	return x.byID[id]
}

func (x *cgroupIndex) walk(dir, rel string, depth int) {
	if st, err := os.Lstat(dir); err == nil {
		x.byID[inode(st)] = rel
	}
	if depth >= maxCgroupDepth {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || len(x.byID) >= maxCgroups {
			continue
		}
		x.walk(filepath.Join(dir, e.Name()), filepath.Join(rel, e.Name()), depth+1)
	}
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted:
// /sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source super
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if ok && len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") && fields[3] == "/" {
			return fields[4]
		}
	}
	return ""
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
