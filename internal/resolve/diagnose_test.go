package resolve

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

func TestListHoldersCapsAndOrders(t *testing.T) {
	var all []events.Holder
	for i := range 20 {
		all = append(all, events.Holder{State: "TIME_WAIT", RemainingMS: int64(i * 1000)})
		all = append(all, events.Holder{State: "ESTABLISHED", Source: events.SeenLive})
	}
	all = append(all, events.Holder{State: "BOUND"}, events.Holder{State: "LISTEN"}, events.Holder{State: "LISTEN", Source: events.Recorded})
	got, tw := listHolders(all)
	if tw == nil || tw.Count != 20 || tw.MaxRemainingMS != 19_000 {
		t.Fatalf("time_wait = %+v, want 20 sockets, 19 s", tw)
	}
	if len(got) != 3+maxListedConnected+maxListedTimeWait {
		t.Fatalf("listed %d holders, want %d", len(got), 3+maxListedConnected+maxListedTimeWait)
	}
	if got[0].State != "LISTEN" || got[1].State != "LISTEN" || got[2].State != "BOUND" || got[3].State != "ESTABLISHED" {
		t.Errorf("order = %v %v %v %v, want listeners, bound, then connections", got[0].State, got[1].State, got[2].State, got[3].State)
	}
	if last := got[len(got)-1]; last.State != "TIME_WAIT" || got[3+maxListedConnected].RemainingMS != 19_000 {
		t.Errorf("TIME_WAIT not last or not by time left: %+v", got[3+maxListedConnected:])
	}
}

func TestMergeRecorded(t *testing.T) {
	live := []events.Holder{{Source: events.SeenLive, Inode: 5, State: "LISTEN", Processes: []events.Process{}}}
	since := time.Unix(1000, 0)
	given := []events.Holder{
		{Source: events.Recorded, Inode: 5, Since: since, Processes: []events.Process{{PID: 9}}},
		{Source: events.Recorded, Inode: 6, Processes: []events.Process{{PID: 10}}},
	}
	got := mergeRecorded(live, given, true)
	if len(got) != 2 || got[0].Source != events.SeenLive || !got[0].Since.Equal(since) || got[0].Processes[0].PID != 9 {
		t.Fatalf("merged = %+v, want the live holder with the recorded process and time", got)
	}
	if got[1].Source != events.Recorded || got[1].Inode != 6 {
		t.Errorf("the holder not seen live = %+v, want it kept as recorded", got[1])
	}
}

func TestPortFilterBytecode(t *testing.T) {
	bc := portFilter(8080)
	// op {code=S_EQ, yes=8, no=12}, operand {no=port}: see inet_diag_bc_run.
	ne := binary.NativeEndian
	if len(bc) != 8 || bc[0] != inetDiagBCSEq || bc[1] != 8 || ne.Uint16(bc[2:]) != 12 || ne.Uint16(bc[6:]) != 8080 {
		t.Errorf("portFilter(8080) = %v", bc)
	}
}

func onOff(b *bool) string {
	switch {
	case b == nil:
		return "unknown"
	case *b:
		return "on"
	}
	return "off"
}

// A failure whose holders are all gone still lists them as a list, never
// null: the schema requires it.
func TestListHoldersNeverNil(t *testing.T) {
	if got, _ := listHolders(nil); got == nil {
		t.Error("listHolders(nil) = nil, want an empty list")
	}
}
