package incident

import (
	"fmt"
	"sort"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// spreadKey is what makes incidents on different hosts "the same": the
// port, the cause, and the programs on both sides (not pids, addresses or
// network namespaces, which differ from node to node).
type spreadKey struct {
	proto, cause, failing, holder string
	port                          uint16
}

// Spreads finds the incidents that happened on several hosts — the same
// protocol, port, cause, failing program and holder program — and returns
// one Spread per group seen on two hosts or more, by first occurrence.
// Each host counts once per group, with its first such incident.
func Spreads(incidents []*events.Incident) []*events.Spread {
	groups := map[spreadKey]*events.Spread{}
	var order []*events.Spread
	sorted := append([]*events.Incident(nil), incidents...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Start.Before(sorted[j].Start) })
	for _, in := range sorted {
		k := spreadKey{proto: in.Proto, port: in.Port, cause: in.Cause, failing: failingComm(in), holder: holderComm(in)}
		s := groups[k]
		if s == nil {
			s = &events.Spread{Type: events.TypeSpread, Version: events.Version, Proto: k.proto, Port: k.port,
				Cause: k.cause, Failing: k.failing, Holder: k.holder, Hosts: []events.SpreadHost{}, First: in.Start}
			groups[k] = s
			order = append(order, s)
		}
		if hasHost(s, in.Host) {
			continue
		}
		s.Hosts = append(s.Hosts, events.SpreadHost{Host: in.Host, Start: in.Start, State: in.State, OutageMS: in.OutageMS})
		s.Last = in.Start
	}
	var out []*events.Spread
	for _, s := range order {
		if len(s.Hosts) > 1 {
			out = append(out, s)
		}
	}
	return out
}

func hasHost(s *events.Spread, host string) bool {
	for _, h := range s.Hosts {
		if h.Host == host {
			return true
		}
	}
	return false
}

func failingComm(in *events.Incident) string {
	if len(in.Failing) == 0 {
		return ""
	}
	return in.Failing[0].Process.Comm
}

func holderComm(in *events.Incident) string {
	for _, h := range in.Holders {
		if len(h.Processes) > 0 {
			return h.Processes[0].Comm
		}
		if h.State == "TIME_WAIT" {
			return ""
		}
	}
	return ""
}

// SpreadLine is a Spread's one-line summary, every host name and program
// name escaped (events.Escape): "port 8080/tcp, address_overlap, held by
// nginx, failing python3: on 3 hosts (node-a, node-b, node-c), first at …,
// last at …".
func SpreadLine(s *events.Spread) string {
	var b strings.Builder
	fmt.Fprintf(&b, "port %d/%s", s.Port, s.Proto)
	if s.Cause != "" {
		b.WriteString(", " + events.Escape(s.Cause))
	}
	if s.Holder != "" {
		b.WriteString(", held by " + events.Escape(s.Holder))
	}
	if s.Failing != "" {
		b.WriteString(", failing " + events.Escape(s.Failing))
	}
	hosts := make([]string, len(s.Hosts))
	for i, h := range s.Hosts {
		hosts[i] = events.Escape(h.Host)
	}
	fmt.Fprintf(&b, ": on %d hosts (%s), first at %s, last at %s", len(s.Hosts), strings.Join(hosts, ", "), stamp(s.First), stamp(s.Last))
	return b.String()
}
