package tracer

import (
	"os"
	"os/exec"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestUnfollowedChildrenAreCounted: a followed tree larger than the table
// of traced processes loses its new children, and the kernel counts each
// one (Stats.Unfollowed, the stop record's unfollowed) instead of dropping
// them silently. The table is filled the way a big tree would fill it,
// then this (traced) process forks.
func TestUnfollowedChildrenAreCounted(t *testing.T) {
	testenv.RequireRoot(t)
	self := uint32(os.Getpid())
	tr, err := Open(Config{Backend: testenv.Backend(), PIDs: []uint32{self}, FollowChildren: true, Ports: []PortRange{{Lo: 1, Hi: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	child := func() int {
		t.Helper()
		c := exec.Command("true")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		return c.Process.Pid
	}
	child() // followed while there is room (and gone again)
	if st, err := tr.Stats(); err != nil || st.Unfollowed != 0 {
		t.Fatalf("unfollowed %d (%v) with room in the table, want 0", st.Unfollowed, err)
	}
	capacity := int(tr.maps.TracedPids.MaxEntries())
	for pid := uint32(4_000_000); ; pid++ { // above any pid here: stands for live members of the tree
		if err := tr.TracePID(pid); err != nil {
			break
		}
		if pid-4_000_000 > uint32(capacity) {
			t.Fatalf("traced_pids took more than its %d entries", capacity)
		}
	}
	for range 3 {
		child()
	}
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Unfollowed != 3 {
		t.Errorf("3 children forked with the table full: unfollowed %d, want 3", st.Unfollowed)
	}
}
