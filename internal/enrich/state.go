package enrich

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Where the runtimes keep their state, relative to Options.Root.
var (
	// containerd's task bundles, one directory per containerd namespace
	// ("k8s.io" for the CRI plugin, "moby" for docker); k3s and rke2 run
	// their own containerd under /run/k3s.
	containerdTasks = []string{
		"run/containerd/io.containerd.runtime.v2.task",
		"run/k3s/containerd/io.containerd.runtime.v2.task",
		"run/containerd/io.containerd.runtime.v1.linux",
	}
	// containers/storage, shared by CRI-O and podman: the run root holds
	// CRI-O's bundles, the graph root podman's, and containers.json the
	// names and images of all.
	storageRunContainers   = "run/containers/storage/overlay-containers"
	storageGraphContainers = "var/lib/containers/storage/overlay-containers"
)

// Annotations the CRI implementations put in a container's OCI bundle
// config.json, and labels cri-dockerd puts on docker containers.
const (
	criContainerType      = "io.kubernetes.cri.container-type"
	criContainerName      = "io.kubernetes.cri.container-name"
	criSandboxName        = "io.kubernetes.cri.sandbox-name"
	criSandboxNamespace   = "io.kubernetes.cri.sandbox-namespace"
	criSandboxUID         = "io.kubernetes.cri.sandbox-uid"
	criImageName          = "io.kubernetes.cri.image-name"
	crioContainerType     = "io.kubernetes.cri-o.ContainerType"
	crioImageName         = "io.kubernetes.cri-o.ImageName"
	containerManager      = "io.container.manager" // "libpod" for podman, "cri-o" for CRI-O
	kubePodName           = "io.kubernetes.pod.name"
	kubePodNamespace      = "io.kubernetes.pod.namespace"
	kubePodUID            = "io.kubernetes.pod.uid"
	kubeContainerName     = "io.kubernetes.container.name"
	sandboxType           = "sandbox"
	dockerSandboxName     = "POD" // cri-dockerd's container name for a pod's sandbox
	containerManagerCRIO  = "cri-o"
	containerManagerPodmn = "libpod"
)

// ociConfig is the part of an OCI runtime bundle's config.json read here.
type ociConfig struct {
	Annotations map[string]string `json:"annotations"`
}

// fromState fills c and pod from the runtime's state on disk for the
// container f names. The runtime f's cgroup path names is asked first;
// a bare id (the kubelet's cgroupfs layout) is looked for with each.
func (n *Namer) fromState(f cgroupFacts, c *events.Container, pod *events.Pod) {
	order := []string{Containerd, CRIO, Docker, Podman}
	if f.runtime != "" {
		order = []string{f.runtime}
	}
	for _, rt := range order {
		var ok bool
		switch rt {
		case Docker:
			ok = n.docker(f.id, c, pod)
		case Containerd:
			ok = n.containerd(f.id, c, pod)
		case CRIO:
			ok = n.crio(f.id, c, pod)
		case Podman:
			ok = n.podman(f.id, c, pod)
		}
		if ok {
			return
		}
	}
}

// docker reads /var/lib/docker/containers/<id>/config.v2.json (under
// dockerd's data root, Options.DockerRoot): the
// container's name, image, and for a pod's container run by cri-dockerd
// the kubelet's labels.
func (n *Namer) docker(id string, c *events.Container, pod *events.Pod) bool {
	b, err := readBeneath(n.path(n.dockerDir), filepath.Join(id, "config.v2.json"), maxConfigSize)
	if err != nil {
		return false
	}
	var cfg struct {
		Name   string
		Config struct {
			Image  string
			Labels map[string]string
		}
	}
	if json.Unmarshal(b, &cfg) != nil {
		return false
	}
	c.Runtime = Docker
	c.Name = strings.TrimPrefix(cfg.Name, "/")
	c.Image = cfg.Config.Image
	kubeLabels(cfg.Config.Labels, c, pod)
	return true
}

// containerd reads the OCI bundle containerd's shim runs the container
// from, in whichever containerd namespace has it. Docker's containers are
// in namespace "moby", and docker's own config names them better.
func (n *Namer) containerd(id string, c *events.Container, pod *events.Pod) bool {
	for _, tasks := range n.taskDirs {
		dir := n.path(tasks)
		namespaces, err := listDir(dir)
		if err != nil {
			continue
		}
		for _, ns := range namespaces {
			b, err := readBeneath(dir, filepath.Join(ns, id, "config.json"), maxConfigSize)
			if err != nil {
				continue
			}
			if ns == "moby" && n.docker(id, c, pod) {
				return true
			}
			var cfg ociConfig
			if json.Unmarshal(b, &cfg) != nil {
				return false
			}
			a := cfg.Annotations
			c.Runtime = Containerd
			if a[criContainerType] != sandboxType {
				c.Name = a[criContainerName]
			}
			c.Image = a[criImageName]
			pod.Namespace, pod.Name, pod.UID = a[criSandboxNamespace], a[criSandboxName], a[criSandboxUID]
			return true
		}
	}
	return false
}

// crio reads the bundle CRI-O keeps in containers/storage's run root (or,
// on older versions, its graph root): the kubelet's pod and container
// names as annotations.
func (n *Namer) crio(id string, c *events.Container, pod *events.Pod) bool {
	for _, dir := range []string{storageRunContainers, storageGraphContainers} {
		b, err := readBeneath(n.path(dir), filepath.Join(id, "userdata", "config.json"), maxConfigSize)
		if err != nil {
			continue
		}
		var cfg ociConfig
		if json.Unmarshal(b, &cfg) != nil {
			return false
		}
		a := cfg.Annotations
		if a[containerManager] == containerManagerPodmn {
			return n.podman(id, c, pod)
		}
		c.Runtime = CRIO
		c.Image = a[crioImageName]
		kubeLabels(a, c, pod)
		if a[crioContainerType] == sandboxType {
			c.Name = ""
		}
		return true
	}
	return false
}

// podman reads containers/storage's containers.json, where podman records
// each container's names and the image it was created from.
func (n *Namer) podman(id string, c *events.Container, pod *events.Pod) bool {
	all, err := n.storage.lookup(n.path(storageGraphContainers), "containers.json")
	if err != nil {
		return false
	}
	sc, ok := all[id]
	if !ok {
		return false
	}
	c.Runtime = Podman
	if len(sc.Names) > 0 {
		c.Name = sc.Names[0]
	}
	var meta struct {
		ImageName string `json:"image-name"`
		Name      string `json:"name"`
	}
	if json.Unmarshal([]byte(sc.Metadata), &meta) == nil {
		c.Image = meta.ImageName
		if c.Name == "" {
			c.Name = meta.Name
		}
	}
	return true
}

// kubeLabels takes the kubelet's pod and container names from labels or
// annotations (cri-dockerd's labels, CRI-O's annotations).
func kubeLabels(l map[string]string, c *events.Container, pod *events.Pod) {
	if l[kubePodName] == "" {
		return
	}
	pod.Namespace, pod.Name, pod.UID = l[kubePodNamespace], l[kubePodName], l[kubePodUID]
	if name := l[kubeContainerName]; name != "" && name != dockerSandboxName {
		c.Name = name
	} else {
		c.Name = ""
	}
}

// StateDirs are the host directories bindwatch reads container and pod
// names from: a deployment that runs it in a container mounts each
// read-only at the same path (deploy/kubernetes checks that it does).
func StateDirs() []string {
	dirs := []string{strings.TrimPrefix(dockerRoot(""), "/") + "/containers"}
	dirs = append(dirs, containerdTasks...)
	dirs = append(dirs, storageRunContainers, storageGraphContainers, podLogs, containerLogs)
	for i, d := range dirs {
		dirs[i] = "/" + d
	}
	return dirs
}
