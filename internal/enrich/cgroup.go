package enrich

import (
	"regexp"
	"strings"
)

// Runtimes, as Container.Runtime names them.
const (
	Docker     = "docker"
	Containerd = "containerd"
	CRIO       = "cri-o"
	Podman     = "podman"
)

// cgroupFacts is what a cgroup path alone says about a container.
type cgroupFacts struct {
	runtime string // "" when the path does not say (a bare id under kubepods)
	id      string // 64 hex digits
	podUID  string // the kubelet's pod uid, with dashes
}

// scopeID matches one path component that names a container: the runtime's
// prefix (systemd driver: "<prefix>-<id>.scope"; cgroupfs driver of CRI-O
// and podman: "<prefix>-<id>") or a bare id (cgroupfs driver of docker,
// "/docker/<id>", and of the kubelet, "/kubepods/<qos>/pod<uid>/<id>").
var scopeID = regexp.MustCompile(`^(?:(docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$`)

// podComponent matches the kubelet's pod cgroup: "pod<uid>" (cgroupfs
// driver) or "kubepods[-<qos>]-pod<uid>.slice" (systemd driver, where the
// uid's dashes are underscores because "-" separates slice levels).
var podComponent = regexp.MustCompile(`^(?:pod([0-9a-f-]{36})|kubepods(?:-[a-z]+)?-pod([0-9a-f_]{36})\.slice)$`)

var runtimeOfPrefix = map[string]string{
	"docker": Docker, "cri-containerd": Containerd, "crio": CRIO, "libpod": Podman,
}

// parseCgroup reads the container and pod a cgroup path names, for the
// layouts of docker, containerd, CRI-O and podman under the systemd and
// cgroupfs drivers, on cgroup v1 and v2. The innermost container wins: a
// nested runtime's cgroup (podman's "libpod-<id>.scope/container", a
// container in a container) is below its parent's. Runtime helper scopes
// (conmon, "crio-conmon-<id>.scope", "libpod-conmon-<id>.scope") are not
// containers and do not match.
func parseCgroup(path string) cgroupFacts {
	var f cgroupFacts
	parts := strings.Split(path, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		part := parts[i]
		if f.id == "" {
			if m := scopeID.FindStringSubmatch(part); m != nil {
				f.id, f.runtime = m[2], runtimeOfPrefix[m[1]]
				if m[1] == "" && i > 0 && parts[i-1] == "docker" {
					f.runtime = Docker
				}
				continue
			}
		}
		if m := podComponent.FindStringSubmatch(part); m != nil {
			f.podUID = m[1]
			if f.podUID == "" {
				f.podUID = strings.ReplaceAll(m[2], "_", "-")
			}
			break
		}
	}
	return f
}

// bestCgroupPath picks, from /proc/PID/cgroup, the path that names a
// container: the unified hierarchy's ("0::") on cgroup v2, else on a v1 or
// hybrid host the first v1 hierarchy's that does (a process's v2 path there
// is often "/" while its v1 paths carry the container's).
func bestCgroupPath(procCgroup string) string {
	first := ""
	for _, line := range strings.Split(procCgroup, "\n") {
		// hierarchy-id:controllers:path; the path may contain ':'.
		fields := strings.SplitN(line, ":", 3)
		if len(fields) != 3 {
			continue
		}
		if parseCgroup(fields[2]).id != "" {
			if fields[0] == "0" {
				return fields[2]
			}
			if first == "" {
				first = fields[2]
			}
		}
	}
	return first
}
