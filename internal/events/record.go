package events

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Record is one record bindwatch writes: a pointer to one of the record
// types of this package (*Failure, *Start, …, *Doctor), every one of them
// listed in the registry below. The set is closed: only this package can
// add a type, and adding one means a line in the registry, whose tests
// then fail until every form (text, ECS, metrics, redaction, …) says
// what it does with it (docs/architecture.md, "Adding a record").
type Record interface {
	// RecordType is the record's "type" field: TypeFailure, TypeStart, ….
	RecordType() string
	// header is the record's Header, nil for a record without one
	// (Incident, Spread, Doctor).
	header() *Header
}

// RecordType is the record's type (Record).
func (h *Header) RecordType() string { return h.Type }
func (h *Header) header() *Header    { return h }

// The records without a Header carry their own Type.

// RecordType is the record's type (Record).
func (r *Incident) RecordType() string { return r.Type }
func (*Incident) header() *Header      { return nil }

// RecordType is the record's type (Record).
func (r *Spread) RecordType() string { return r.Type }
func (*Spread) header() *Header      { return nil }

// RecordType is the record's type (Record).
func (r *Doctor) RecordType() string { return r.Type }
func (*Doctor) header() *Header      { return nil }

// TimeOf is when rec happened, its Header's Time; zero for a record
// without a Header.
func TimeOf(rec Record) time.Time {
	if h := rec.header(); h != nil {
		return h.Time
	}
	return time.Time{}
}

// registry is every record type: its "type" and a new, empty record of it.
var registry = map[string]func() Record{
	TypeFailure:       func() Record { return new(Failure) },
	TypeStart:         func() Record { return new(Start) },
	TypeRepeats:       func() Record { return new(Repeats) },
	TypeLost:          func() Record { return new(Lost) },
	TypeStop:          func() Record { return new(Stop) },
	TypeOutputLost:    func() Record { return new(OutputLost) },
	TypeReleased:      func() Record { return new(Released) },
	TypeSignal:        func() Record { return new(Signal) },
	TypeSignalRepeats: func() Record { return new(SignalRepeats) },
	TypeRecovered:     func() Record { return new(Recovered) },
	TypePortFree:      func() Record { return new(PortFree) },
	TypeAbandoned:     func() Record { return new(Abandoned) },
	TypeUntracked:     func() Record { return new(IncidentUntracked) },
	TypeIncident:      func() Record { return new(Incident) },
	TypeSpread:        func() Record { return new(Spread) },
	TypePortShared:    func() Record { return new(PortShared) },
	TypeWho:           func() Record { return new(Who) },
	TypeDoctor:        func() Record { return new(Doctor) },
	TypeFree:          func() Record { return new(FreeRecord) },
	TypeWaitFree:      func() Record { return new(WaitFreeRecord) },
	TypeHeld:          func() Record { return new(HeldRecord) },
}

// RecordTypes lists the type of every record, sorted.
func RecordTypes() []string {
	types := make([]string, 0, len(registry))
	for t := range registry {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// NewRecord returns a new, empty record of type typ, nil for a type
// bindwatch does not write.
func NewRecord(typ string) Record {
	if n := registry[typ]; n != nil {
		return n()
	}
	return nil
}

// Decode turns one JSON line into its record, by its "type" field. It
// does not check the version (incident.Decode does, for report).
func Decode(line []byte) (Record, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return nil, fmt.Errorf("not a JSON record: %w", err)
	}
	rec := NewRecord(head.Type)
	if rec == nil {
		return nil, fmt.Errorf("unknown record type %q (hint: a record of a newer bindwatch, or not bindwatch's)", head.Type)
	}
	if err := json.Unmarshal(line, rec); err != nil {
		return nil, fmt.Errorf("%s record: %w", head.Type, err)
	}
	return rec, nil
}
