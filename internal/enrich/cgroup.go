package enrich

import (
	"regexp"
	"strings"
	"sync"
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
var scopeID = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:(docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$`)
})

// cgroupsPathID matches a systemd cgroupsPath, "<slice>:<prefix>:<id>",
// taken as one directory's name by a runtime on the cgroupfs driver (a
// kubelet on the systemd driver over containerd without SystemdCgroup).
var cgroupsPathID = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([^:]*):(docker|cri-containerd|crio|libpod):([0-9a-f]{64})$`)
})

// anyID finds a 64-hex-digit id anywhere in a path component, between
// bytes that are not hex digits: another runtime's layout, named by its id
// alone (no runtime).
var anyID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?:^|[^0-9a-f])([0-9a-f]{64})(?:[^0-9a-f]|$)`) })

// minNamingLen is the shortest path component any of scopeID,
// cgroupsPathID, anyID and podComponent matches: "pod" and a uid of 36.
const minNamingLen = 3 + 36

// podComponent matches the kubelet's pod cgroup: "pod<uid>" (cgroupfs
// driver) or "kubepods[-<qos>]-pod<uid>.slice" (systemd driver, where the
// uid's dashes are underscores because "-" separates slice levels).
var podComponent = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:pod([0-9a-f-]{36})|kubepods(?:-[a-z]+)?-pod([0-9a-f_]{36})\.slice)$`)
})

var runtimeOfPrefix = map[string]string{
	"docker": Docker, "cri-containerd": Containerd, "crio": CRIO, "libpod": Podman,
}

// parseCgroup reads the container and pod a cgroup path names, for the
// layouts of docker, containerd, CRI-O and podman under the systemd and
// cgroupfs drivers, on cgroup v1 and v2; another runtime's container is
// known by its id alone, a component holding 64 hex digits. The innermost
// container wins: a nested runtime's cgroup (podman's
// "libpod-<id>.scope/container", a container in a container) is below its
// parent's. Runtime helper scopes (conmon, "crio-conmon-<id>.scope",
// "libpod-conmon-<id>.scope") are not containers and do not match: conmon
// watches a container from outside it.
//
// It is bindwatch's one rule for a process's container: Process fills
// container.id and container_id from it alike.
func parseCgroup(path string) cgroupFacts {
	var f cgroupFacts
	parts := strings.Split(path, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		part := parts[i]
		if len(part) < minNamingLen { // "/", "system.slice", "ssh.service": no regexp to compile
			continue
		}
		if f.id == "" {
			if m := scopeID().FindStringSubmatch(part); m != nil {
				f.id, f.runtime = m[2], runtimeOfPrefix[m[1]]
				if m[1] == "" && i > 0 && parts[i-1] == "docker" {
					f.runtime = Docker
				}
				continue
			}
			if m := cgroupsPathID().FindStringSubmatch(part); m != nil {
				f.id, f.runtime = m[3], runtimeOfPrefix[m[2]]
				part = m[1] // the slice may be the pod's
			} else if id := otherID(part); id != "" {
				f.id = id
				continue
			}
		}
		if m := podComponent().FindStringSubmatch(part); m != nil {
			f.podUID = m[1]
			if f.podUID == "" {
				f.podUID = strings.ReplaceAll(m[2], "_", "-")
			}
			break
		}
	}
	return f
}

// otherID is the id a component of another runtime's layout holds (the
// last run of 64 hex digits), or "" when it holds none or is a runtime
// helper's scope (conmon).
func otherID(part string) string {
	m := anyID().FindAllStringSubmatchIndex(part, -1)
	if len(m) == 0 {
		return ""
	}
	start, end := m[len(m)-1][2], m[len(m)-1][3]
	if strings.HasSuffix(strings.TrimRight(part[:start], "-_:."), "conmon") {
		return ""
	}
	return part[start:end]
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
