package sink

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// A failure whose holders are thousands of sockets, one of them shared by
// thousands of processes with long command lines — what one user can make
// — is written within events.MaxRecordBytes: the middle of each list left
// out and counted (holders_omitted, processes_omitted), long strings cut
// around "…", and the record still one of docs/schema.json.
func TestFittedKeepsRecordsReadable(t *testing.T) {
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	f := failure(8080)
	f.Backend, f.Hook = "tracepoint", "tp_exit_bind"
	f.Process.Cmdline = []string{"srv", strings.Repeat("a", 1<<20)}
	var procs []events.Process
	for i := range 5000 {
		procs = append(procs, events.Process{PID: 1000 + i, Comm: "worker", Cmdline: []string{"worker", strings.Repeat("w", 300)}})
	}
	f.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080, Processes: procs}}
	for i := range 5000 {
		f.Holders = append(f.Holders, events.Holder{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: fmt.Sprintf("10.0.%d.%d", i/256, i%256), Port: 8080, Processes: []events.Process{}})
	}
	whole, _ := JSON(f)
	if len(whole) < 3<<20 {
		t.Fatalf("the record is only %d bytes: not a test of the limit", len(whole))
	}
	b, err := Fitted(JSON)(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > events.MaxRecordBytes {
		t.Fatalf("fitted record is %d bytes, over %d", len(b), events.MaxRecordBytes)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("the fitted record is not one of docs/schema.json: %v", err)
	}
	holders := doc["holders"].([]any)
	omitted, _ := doc["holders_omitted"].(float64)
	if int(omitted)+len(holders) != len(f.Holders) || omitted == 0 {
		t.Errorf("%d holders kept, %v omitted; want %d in all", len(holders), doc["holders_omitted"], len(f.Holders))
	}
	first := holders[0].(map[string]any)
	kept := len(first["processes"].([]any))
	if po, _ := first["processes_omitted"].(float64); int(po)+kept != len(procs) || po == 0 {
		t.Errorf("%d processes kept, %v omitted; want %d in all", kept, first["processes_omitted"], len(procs))
	}
	p := doc["process"].(map[string]any)
	if p["cmdline_truncated"] != true || !strings.Contains(fmt.Sprint(p["cmdline"]), events.CmdlineGap) {
		t.Errorf("the failing process's 1 MB argument is not cut around %q", events.CmdlineGap)
	}
	// A record within the limit is written as it is.
	small := failure(1)
	want, _ := JSON(small)
	if got, _ := Fitted(JSON)(small); string(got) != string(want) {
		t.Errorf("a small record was changed:\n%s\n%s", want, got)
	}
}
