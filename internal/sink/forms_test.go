package sink

import (
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Every form knows every record type: ECS maps it or carries it whole,
// metrics counts it or says why not, the loss book knows how many
// failures it carries. A type added to events' registry fails here until
// each says what it does with it.
func TestFormsKnowEveryRecord(t *testing.T) {
	m, err := ListenMetrics(MetricsOptions{Addr: "127.0.0.1:0", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, typ := range events.RecordTypes() {
		rec, err := events.Decode([]byte(`{"type":"` + typ + `","version":1,"time":"2026-11-25T10:31:02.113Z","host":"h"}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, known := mappedDoc(rec); !known {
			t.Errorf("%s: not in the ECS form (hint: map it in mappedDoc, internal/sink/ecs.go, or list it with the records carried whole)", typ)
		}
		if b, err := ECS(rec); err != nil || len(b) == 0 {
			t.Errorf("%s: ECS form %q: %v", typ, b, err)
		}
		for name, form := range map[string]Form{"json": JSON, "text": Text, "live text": LiveText(events.LiveOptions{})} {
			if b, err := form(rec); err != nil || len(b) == 0 {
				t.Errorf("%s: %s form %q: %v", typ, name, b, err)
			}
		}
		if !m.count(rec) {
			t.Errorf("%s: unknown to the metrics (hint: count it in Metrics.count, internal/sink/metrics.go, or list it with those that have no metric)", typ)
		}
		if _, known := carried(rec); !known {
			t.Errorf("%s: unknown to the loss count (hint: say how many failures it carries in carried, internal/sink/loss.go)", typ)
		}
	}
}
