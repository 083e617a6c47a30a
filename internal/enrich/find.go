package enrich

import (
	"os"
	"strconv"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Found is a running container and one of its processes (the lowest pid),
// through which its namespaces can be entered.
type Found struct {
	Container events.Container
	Pod       events.Pod
	PID       int
}

// minIDPrefix is the shortest id prefix FindContainers matches: shorter
// ones match too many containers to mean one.
const minIDPrefix = 4

// FindContainers returns the running containers whose name is query or
// whose id starts with it (at least minIDPrefix hex digits), found through
// the processes in /proc. A container's name is matched as the runtime
// spells it; a pod's container also by "namespace/pod/container".
func (n *Namer) FindContainers(query string) []Found {
	entries, err := os.ReadDir("/proc")
	if err != nil || query == "" {
		return nil
	}
	byID := map[string]*Found{}
	var order []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if err != nil {
			continue
		}
		path := bestCgroupPath(string(b))
		id := parseCgroup(path).id
		if id == "" {
			continue
		}
		if f, ok := byID[id]; ok {
			f.PID = min(f.PID, pid)
			continue
		}
		r := n.lookup(path)
		if !matches(query, id, r) {
			continue
		}
		byID[id] = &Found{Container: r.container, Pod: r.pod, PID: pid}
		order = append(order, id)
	}
	found := make([]Found, 0, len(order))
	for _, id := range order {
		found = append(found, *byID[id])
	}
	return found
}

func matches(query, id string, r named) bool {
	if len(query) >= minIDPrefix && strings.HasPrefix(id, query) {
		return true
	}
	c, p := r.container, r.pod
	if c.Name != "" && c.Name == query {
		return true
	}
	return p.Name != "" && c.Name != "" && query == p.Namespace+"/"+p.Name+"/"+c.Name
}
