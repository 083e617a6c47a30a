package enrich

import (
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The kubelet's log directories, relative to Options.Root:
// /var/log/pods/<namespace>_<pod>_<uid>/<container>/N.log, and the
// symlinks /var/log/containers/<pod>_<namespace>_<container>-<id>.log
// that log agents tail. Their names alone say a pod's namespace and name
// by its uid, and a container's name by its id; no link is followed.
// Kubernetes names cannot contain "_", so the split is unambiguous.
const (
	podLogs       = "var/log/pods"
	containerLogs = "var/log/containers"
)

// fromLogs fills in what the log directories say and the state did not.
func (n *Namer) fromLogs(f cgroupFacts, c *events.Container, pod *events.Pod) {
	if pod.Name == "" && f.podUID != "" {
		for _, name := range n.listing(podLogs) {
			parts := strings.Split(name, "_")
			if len(parts) == 3 && parts[2] == f.podUID {
				pod.Namespace, pod.Name, pod.UID = parts[0], parts[1], parts[2]
				break
			}
		}
	}
	if c.Name == "" && f.id != "" {
		suffix := "-" + f.id + ".log"
		for _, name := range n.listing(containerLogs) {
			rest, ok := strings.CutSuffix(name, suffix)
			if !ok {
				continue
			}
			parts := strings.Split(rest, "_")
			if len(parts) != 3 {
				continue
			}
			c.Name = parts[2]
			if pod.Name == "" {
				pod.Name, pod.Namespace = parts[0], parts[1]
			}
			break
		}
	}
}
