package resolve

import (
	"slices"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// WhoRecord is `bindwatch who`'s answer for proto/port: every socket on it
// in each of namespaces, merged into one record (each holder carries its
// netns). A namespace that vanished while being searched is skipped,
// unless it is the only one. eph is bindwatch's own namespace's ephemeral
// range, for the note on a port that outgoing connections may take.
func (r *Resolver) WhoRecord(namespaces []host.Netns, proto string, port uint16, eph diagnose.EphemeralPorts) (*events.Who, error) {
	rec := &events.Who{Header: events.Header{Type: events.TypeWho, Version: events.Version}, Port: port, Proto: proto, Holders: []events.Holder{},
		EphemeralNote: EphemeralNote(eph, port)}
	var tw events.TimeWait
	for _, ns := range namespaces {
		rep, err := r.Who(ns, proto, port)
		if err != nil {
			if len(namespaces) == 1 {
				return nil, err
			}
			continue
		}
		rec.Netns = append(rec.Netns, rep.Netns.Inode)
		rec.Sockets += rep.Sockets
		rec.Holders = append(rec.Holders, rep.Holders...)
		if rep.TimeWait != nil {
			tw.Count += rep.TimeWait.Count
			tw.MaxRemainingMS = max(tw.MaxRemainingMS, rep.TimeWait.MaxRemainingMS)
		}
	}
	if tw.Count > 0 {
		rec.TimeWait = &tw
	}
	rec.Held = rec.Sockets > 0
	rec.ReusePortGroups = ReusePortGroups(rec.Holders)
	return rec, nil
}

// ReusePortGroups finds the SO_REUSEPORT groups among a port's holders:
// the listening (TCP) or bound (UDP) sockets with reuseport on, two or
// more on one address of one network namespace.
func ReusePortGroups(holders []events.Holder) []events.ReusePortGroup {
	type key struct {
		netns uint32
		addr  string
	}
	var order []key
	groups := map[key]*events.ReusePortGroup{}
	programs := map[key]map[string]bool{}
	for _, h := range holders {
		if h.ReusePort == nil || !*h.ReusePort || (h.State != "LISTEN" && h.State != "UNCONN") {
			continue
		}
		k := key{h.Netns, h.Addr}
		g := groups[k]
		if g == nil {
			g = &events.ReusePortGroup{Netns: h.Netns, Addr: h.Addr, PIDs: []int{}}
			groups[k], programs[k] = g, map[string]bool{}
			order = append(order, k)
		}
		g.Sockets++
		if len(h.Processes) > 0 {
			p := &h.Processes[0]
			if !slices.Contains(g.PIDs, p.PID) {
				g.PIDs = append(g.PIDs, p.PID)
			}
			programs[k][diagnose.ProgramID(p)+"\x00"+p.Cgroup] = true
		}
	}
	var out []events.ReusePortGroup
	for _, k := range order {
		if g := groups[k]; g.Sockets > 1 {
			g.Programs = len(programs[k])
			out = append(out, *g)
		}
	}
	return out
}
