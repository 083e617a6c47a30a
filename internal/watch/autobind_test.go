package watch

import (
	"testing"

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
	if f.Syscall != "listen" || f.Errno != "EADDRINUSE" || f.Addr != "0.0.0.0" || f.Proto != "tcp" {
		t.Errorf("got %s %s %s %s, want listen EADDRINUSE tcp 0.0.0.0:0", f.Syscall, f.Errno, f.Proto, f.Addr)
	}
	if f.Process.PID != helper.Process.Pid || f.Process.Netns == testenv.Netns(t) || f.Process.Netns == 0 {
		t.Errorf("pid %d in netns %d, want the helper %d in a namespace other than ours (%d)",
			f.Process.PID, f.Process.Netns, helper.Process.Pid, testenv.Netns(t))
	}
}
