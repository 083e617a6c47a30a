package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The implicit-bind rule (connect, sendto: no local port), from the
// evidence resolve gathers: the cause, how sure, and a hint that matches
// what holds the ports.
func TestDiagnoseImplicit(t *testing.T) {
	eph := EphemeralPorts{Lo: 40000, Hi: 41023}
	tcp := func(lp *events.LocalPorts) *events.Failure {
		return &events.Failure{Syscall: "connect", Errno: "EADDRNOTAVAIL", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0",
			Destination: &events.Destination{IP: "10.0.0.5", Port: 5432}, LocalPorts: lp, Process: events.Process{PID: 77, Netns: 1}}
	}
	owners := []events.PortOwner{
		{PIDs: nil, Ports: 900, States: map[string]int{"TIME_WAIT": 900}},
		{PIDs: []int{4242}, Comm: "app", Ports: 124, States: map[string]int{"ESTABLISHED": 124}},
	}
	for _, tc := range []struct {
		name               string
		f                  *events.Failure
		cause, confidence  string
		wantDiag, wantHint []string
		notInHint          []string
	}{
		{
			name:       "all ports held: TIME_WAIT and one program's connections",
			f:          tcp(&events.LocalPorts{Range: "40000–41023", Usable: 1024, InUse: 1024, Owners: owners}),
			cause:      events.CauseEphemeralExhausted,
			confidence: events.ConfidenceCertain,
			wantDiag:   []string{"connect() to 10.0.0.5:5432/tcp", "1,024 of 1,024 usable ports", "40000–41023", "900 TIME_WAIT of no process", "124 ESTABLISHED by app (pid 4242)"},
			wantHint:   []string{"Have app (pid 4242) reuse connections", "net.ipv4.tcp_tw_reuse=1", "affects connect() only", "ip_local_port_range", "IP_BIND_ADDRESS_NO_PORT"},
		},
		{
			name:       "only live connections: no tcp_tw_reuse",
			f:          tcp(&events.LocalPorts{Range: "40000–41023", Usable: 1024, InUse: 1024, Owners: owners[1:]}),
			cause:      events.CauseEphemeralExhausted,
			confidence: events.ConfidenceCertain,
			wantHint:   []string{"reuse connections"},
			notInHint:  []string{"tcp_tw_reuse"},
		},
		{
			name:       "some freed since: likely",
			f:          tcp(&events.LocalPorts{Range: "40000–41023", Usable: 1024, InUse: 1000, Owners: owners[1:]}),
			cause:      events.CauseEphemeralExhausted,
			confidence: events.ConfidenceLikely,
			wantDiag:   []string{"1,000 of 1,024", "24 ports were freed since"},
		},
		{
			name:       "none held toward it: not a port shortage",
			f:          tcp(&events.LocalPorts{Range: "40000–41023", Usable: 1024, InUse: 0, Owners: []events.PortOwner{}}),
			cause:      events.CauseAddrNotAvailable,
			confidence: events.ConfidenceLikely,
			wantHint:   []string{"ip route get 10.0.0.5"},
		},
		{
			name:       "nothing resolved",
			f:          tcp(nil),
			cause:      events.CauseEphemeralExhausted,
			confidence: events.ConfidenceLikely,
			wantHint:   []string{"ip_local_port_range", "tcp_tw_reuse"},
		},
		{
			name: "UDP: every socket counts, no tcp_tw_reuse, no second address",
			f: &events.Failure{Syscall: "sendto", Errno: "EAGAIN", Proto: "udp", Family: "ipv4", Addr: "0.0.0.0",
				Destination: &events.Destination{IP: "10.0.0.53", Port: 53}, Process: events.Process{PID: 77, Netns: 1},
				LocalPorts: &events.LocalPorts{Range: "40000–41023", Usable: 1024, InUse: 1024,
					Owners: []events.PortOwner{{PIDs: []int{9}, Comm: "resolver", Ports: 1024, States: map[string]int{"UNCONN": 1024}}}}},
			cause:      events.CauseEphemeralExhausted,
			confidence: events.ConfidenceCertain,
			wantDiag:   []string{"sendto() to 10.0.0.53:53/udp", "by UDP sockets", "1,024 UNCONN by resolver (pid 9)"},
			wantHint:   []string{"Close the UDP sockets resolver (pid 9) no longer use", "ip_local_port_range"},
			notInHint:  []string{"tcp_tw_reuse", "IP_BIND_ADDRESS_NO_PORT"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Diagnose(tc.f, Facts{Ephemeral: eph}, time.Now())
			if v.Cause != tc.cause || v.Confidence != tc.confidence {
				t.Errorf("cause %q (%s), want %q (%s): %s", v.Cause, v.Confidence, tc.cause, tc.confidence, v.Diagnosis)
			}
			for _, w := range tc.wantDiag {
				if !strings.Contains(v.Diagnosis, w) {
					t.Errorf("diagnosis %q lacks %q", v.Diagnosis, w)
				}
			}
			for _, w := range tc.wantHint {
				if !strings.Contains(v.Hint, w) {
					t.Errorf("hint %q lacks %q", v.Hint, w)
				}
			}
			for _, w := range tc.notInHint {
				if strings.Contains(v.Hint, w) {
					t.Errorf("hint %q says %q, which the evidence does not support", v.Hint, w)
				}
			}
		})
	}
}
