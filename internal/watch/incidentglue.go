package watch

import (
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/incident"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// incidentKernel is the tracer as incident.Live sees it: internal/incident
// loads no BPF, and names none of the tracer's types.
type incidentKernel struct{ t *tracer.Tracer }

var _ incident.Kernel = incidentKernel{}

func portKey(p incident.Port) tracer.PortKey {
	return tracer.PortKey{Netns: p.Netns, Proto: p.Proto, Port: p.Port}
}

func (k incidentKernel) MaxPorts() int { return tracer.MaxIncidents }

func (k incidentKernel) WatchPort(p incident.Port, cookie uint64, pids []int) (bool, error) {
	return k.t.WatchPort(portKey(p), cookie, pids)
}

func (k incidentKernel) UnwatchPort(p incident.Port, pids []int) error {
	return k.t.UnwatchPort(portKey(p), pids)
}

func (k incidentKernel) SeesUDPReleases() bool { return k.t.SeesUDPReleases() }
func (k incidentKernel) NoHolders() bool       { return k.t.NoHolders() }

func (k incidentKernel) Impact(p incident.Port) (events.ImpactCount, error) {
	return k.t.Impact(portKey(p))
}

func (k incidentKernel) ReadIncident() (events.Record, error) { return k.t.ReadIncident() }

func (k incidentKernel) WaitIncident(until time.Time) (events.Record, error) {
	return k.t.WaitIncident(until)
}

// incidentResolver is the session's resolver as incident.Live sees it.
type incidentResolver struct{ r *resolve.Resolver }

var _ incident.Resolver = incidentResolver{}

func (r incidentResolver) OwnNetns() host.Netns       { return r.r.OwnNetns() }
func (r incidentResolver) Describe(p *events.Process) { r.r.Describe(p) }

func (r incidentResolver) SocketsOn(ns host.Netns, proto string, ports []uint16) (map[uint16]*host.PortSockets, error) {
	return r.r.SocketsOn(ns, proto, ports)
}

func (r incidentResolver) Holders(ns host.Netns, proto string, port uint16) ([]events.Holder, error) {
	rep, err := r.r.Who(ns, proto, port)
	if err != nil {
		return nil, err
	}
	return rep.Holders, nil
}

func (r incidentResolver) Running(p events.Process) bool { return resolve.Running(p) }

func (r incidentResolver) Owns(p events.Process, inodes map[uint64]string) bool {
	return resolve.Owns(p, inodes)
}
