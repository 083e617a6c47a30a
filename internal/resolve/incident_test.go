package resolve

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// One dump with the OR'ed filter returns the sockets of every port asked
// (TCP listeners, UDP sockets, TIME_WAIT) and of no other: the kernel's
// audit accepts the bytecode and its interpreter keeps exactly those.
func TestSocketsOnManyPorts(t *testing.T) {
	r, err := New(Options{CacheTTL: -1, NoBPF: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var asked []uint16
	inodes := map[uint16]uint64{}
	for i := range 40 {
		port := testenv.FreePort(t)
		if i%3 == 0 { // not asked: must not come back
			testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
			continue
		}
		fd := testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
		inodes[uint16(port)] = socketInode(t, fd)
		asked = append(asked, uint16(port))
	}
	tw := testenv.FreePort(t)
	testenv.LeaveTimeWait(t, "127.0.0.1", tw, false)
	got, err := r.SocketsOn(r.OwnNetns(), "udp", asked)
	if err != nil {
		t.Fatalf("SocketsOn: %v", err)
	}
	if len(got) != len(asked) {
		t.Errorf("%d ports answered, want %d", len(got), len(asked))
	}
	for _, port := range asked {
		ps := got[port]
		if ps == nil || len(ps.Inodes) != 1 {
			t.Errorf("port %d: %+v, want its one socket", port, ps)
			continue
		}
		if _, ok := ps.Inodes[inodes[port]]; !ok {
			t.Errorf("port %d: inodes %v, want %d", port, ps.Inodes, inodes[port])
		}
	}
	tcp, err := r.SocketsOn(r.OwnNetns(), "tcp", append(asked[:3:3], uint16(tw)))
	if err != nil {
		t.Fatalf("SocketsOn tcp: %v", err)
	}
	if ps := tcp[uint16(tw)]; ps == nil || ps.TimeWait == 0 || len(tcp[asked[0]].Inodes) != 0 {
		t.Errorf("tcp: %+v: want the TIME_WAIT socket on %d and nothing on the UDP ports", tcp, tw)
	}
}

func TestPortsFilterBytecode(t *testing.T) {
	ne := binary.NativeEndian
	bc := portsFilter([]uint16{80, 443, 8080})
	// S_EQ 80 {yes 8, no 12}, JMP {yes 4, no 24: to the end}, S_EQ 443, JMP {4, 12}, S_EQ 8080 {8, 12: past the end}.
	want := []struct {
		off       int
		code, yes byte
		no        uint16
	}{{0, inetDiagBCSEq, 8, 12}, {8, inetDiagBCJmp, 4, 24}, {12, inetDiagBCSEq, 8, 12}, {20, inetDiagBCJmp, 4, 12}, {24, inetDiagBCSEq, 8, 12}}
	if len(bc) != 32 {
		t.Fatalf("portsFilter: %d bytes, want 32: %v", len(bc), bc)
	}
	for _, w := range want {
		if bc[w.off] != w.code || bc[w.off+1] != w.yes || ne.Uint16(bc[w.off+2:]) != w.no {
			t.Errorf("op at %d = %v, want %+v", w.off, bc[w.off:w.off+4], w)
		}
	}
}

func socketInode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// Past maxListedPorts ports the filter is their range, two comparisons a
// socket whatever the number of ports (TestSocketsOnManyPorts runs it in
// the kernel with sockets in the range that were not asked for).
func TestManyPortsFilterIsARange(t *testing.T) {
	ne := binary.NativeEndian
	ports := make([]uint16, maxListedPorts+1)
	for i := range ports {
		ports[i] = uint16(9000 - 3*i)
	}
	bc := portsOrRange(ports)
	if len(bc) != 16 || bc[0] != inetDiagBCSGe || ne.Uint16(bc[6:]) != ports[len(ports)-1] ||
		bc[8] != inetDiagBCSLe || ne.Uint16(bc[14:]) != 9000 || ne.Uint16(bc[2:]) != 20 || ne.Uint16(bc[10:]) != 12 {
		t.Errorf("filter of %d ports = %v, want S_GE %d (no: 20) and S_LE 9000 (no: 12)", len(ports), bc, ports[len(ports)-1])
	}
	if got := portsOrRange(ports[:maxListedPorts]); len(got) != maxListedPorts*12-4 {
		t.Errorf("%d ports: %d bytes of filter, want each listed", maxListedPorts, len(got))
	}
}
