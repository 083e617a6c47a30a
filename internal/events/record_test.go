package events

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sampleRecord is a record of type typ as a log line would give it: its
// header filled in (Time and Host where it has them), the rest empty.
func sampleRecord(t *testing.T, typ string) Record {
	t.Helper()
	rec, err := Decode([]byte(`{"type":"` + typ + `","version":1,"time":"2026-11-25T10:31:02.113Z","host":"h"}`))
	if err != nil {
		t.Fatalf("decode a %s record: %v", typ, err)
	}
	return rec
}

// The registry decodes every record type into a record of its own Go
// type, which says its type and writes it back.
func TestRegistry(t *testing.T) {
	seen := map[reflect.Type]string{}
	for _, typ := range RecordTypes() {
		rec := sampleRecord(t, typ)
		if got := rec.RecordType(); got != typ {
			t.Errorf("a %s line decodes into a record of type %q", typ, got)
		}
		if other, dup := seen[reflect.TypeOf(rec)]; dup {
			t.Errorf("%s and %s decode into the same %T", typ, other, rec)
		}
		seen[reflect.TypeOf(rec)] = typ
		b, err := MarshalJSON(rec)
		if err != nil || !strings.HasPrefix(string(b), `{"type":"`+typ+`","version":1,`) {
			t.Errorf("%s record written back as %s (%v)", typ, b, err)
		}
		if h := rec.header(); h != nil && (TimeOf(rec).IsZero() || h.Host != "h") {
			t.Errorf("%s record: header %+v not decoded", typ, h)
		}
	}
	if _, err := Decode([]byte(`{"type":"nonesuch","version":1}`)); err == nil {
		t.Error("an unknown type decoded")
	}
	if NewRecord("nonesuch") != nil {
		t.Error("NewRecord made a record of an unknown type")
	}
}

// The registry has every record docs/schema.json documents, and no other.
func TestRegistryMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		OneOf []struct {
			Ref string `json:"$ref"`
		} `json:"oneOf"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, r := range schema.OneOf {
		documented = append(documented, strings.TrimPrefix(r.Ref, "#/$defs/"))
	}
	slices.Sort(documented)
	if got := RecordTypes(); !slices.Equal(got, documented) {
		t.Errorf("record types\n registry %v\n   schema %v\n(hint: a record type goes into events.registry and docs/schema.json's oneOf)", got, documented)
	}
}

// Text has a line for every record type: a type added to the registry
// fails here until text says it (or lists it with those written as JSON).
func TestTextKnowsEveryRecord(t *testing.T) {
	for _, typ := range RecordTypes() {
		s, ok := text(sampleRecord(t, typ))
		if !ok || s == "" {
			t.Errorf("%s: no text line (hint: add a case for it to text in internal/events/format.go)", typ)
		}
	}
}
