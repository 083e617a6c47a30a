package resolve

import (
	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
)

// WhoRecord is `bindwatch who`'s answer for proto/port: every socket on it
// in each of namespaces, merged into one record (each holder carries its
// netns). A namespace that vanished while being searched is skipped,
// unless it is the only one. eph is bindwatch's own namespace's ephemeral
// range, for the note on a port that outgoing connections may take.
func (r *Resolver) WhoRecord(namespaces []Netns, proto string, port uint16, eph diagnose.EphemeralPorts) (*events.Who, error) {
	rec := &events.Who{Type: events.TypeWho, Version: events.Version, Port: port, Proto: proto, Holders: []events.Holder{},
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
	return rec, nil
}
