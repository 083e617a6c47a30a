package watch

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// listen() on a socket that was never bound picks a port itself (the
// kernel's autobind, inet_csk_get_port); with the ephemeral range used up
// that fails with EADDRINUSE although nobody called bind(). Every backend
// reports it: the tracepoint one at the listen syscall, the others in
// inet_listen. A helper process does it in a network namespace of its own,
// whose tiny port range touches nothing else on the host.
func TestListenAutobindFailure(t *testing.T) {
	s := startSession(t, onlyPort(0))
	helper := testenv.HelperInNetns("autobind")
	if err := helper.Run(); err != nil {
		t.Fatalf("autobind helper: %v (its stderr is above)", err)
	}
	f := s.waitFailure(0)
	if f.Syscall != "listen" || f.Errno != "EADDRINUSE" || f.Addr != "0.0.0.0" || f.Proto != "tcp" || f.Cause != events.CauseEphemeralExhausted {
		t.Errorf("got %s %s %s %s (cause %q), want listen EADDRINUSE tcp 0.0.0.0:0, ephemeral_exhausted", f.Syscall, f.Errno, f.Proto, f.Addr, f.Cause)
	}
	if f.Process.PID != helper.Process.Pid || f.Process.Netns == testenv.Netns(t) || f.Process.Netns == 0 {
		t.Errorf("pid %d in netns %d, want the helper %d in a namespace other than ours (%d)",
			f.Process.PID, f.Process.Netns, helper.Process.Pid, testenv.Netns(t))
	}
}

// An outgoing connection takes a server's port from the ephemeral range,
// made certain in a namespace whose range is that one port: the live
// pipeline's record says so (cause ephemeral_port), names the peer and
// gives the sysctl line for that namespace.
func TestEphemeralCollisionReported(t *testing.T) {
	const port, service = 40123, 5000
	s := startSession(t, onlyPort(port))
	name, _ := testenv.NewNetns(t)
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", port, port))
	inNS := testenv.InNetns(name)
	testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", service), inNS...)
	if c := testenv.StartHelper(t, fmt.Sprintf("connect 127.0.0.1 %d", service), inNS...); c.Line[0] != "ready" {
		t.Fatalf("client: %q, want it connected", c.Line)
	}
	try := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 0.0.0.0 %d", port), inNS...)
	tryPID, _ := strconv.Atoi(try.Line[2])
	f := s.waitFailure(port)
	if f.Cause != events.CauseEphemeralPort || f.Process.PID != tryPID {
		t.Fatalf("failure of pid %d, cause %q: %s\nwant pid %s's, ephemeral_port", f.Process.PID, f.Cause, f.Diagnosis, try.Line[2])
	}
	for _, want := range []string{fmt.Sprintf("to 127.0.0.1:%d (ESTABLISHED)", service), fmt.Sprintf("`nsenter --net=/proc/%d/ns/net sysctl -w net.ipv4.ip_local_reserved_ports=%d`", f.Process.PID, port)} {
		if !strings.Contains(f.Diagnosis+f.Hint, want) {
			t.Errorf("diagnosis %q\nhint %q\nlack %q", f.Diagnosis, f.Hint, want)
		}
	}
}
