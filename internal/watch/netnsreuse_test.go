package watch

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The attack of issue 19 (item 6): uid 65534 makes network namespaces one
// after another (a user namespace of its own, mapped to 65534, and a
// network namespace in it), and in each listens on a port, fails a second
// bind() there and exits. The kernel reuses a freed namespace's inode, so
// the next namespace may have the inode of one whose incident is still
// open: its listen() must never be that incident's recovery. Incidents are
// told apart by inode and cookie, in the kernel (incident_ports holds the
// cookie) and in user space (a failure with another cookie ends the dead
// namespace's incident as exited). Kernels before 5.12 have no cookie from
// a namespace's start: the start record says so (limits.netns_cookie).
func TestNetnsInodeReuseNeverRecovers(t *testing.T) {
	port := testenv.FreePort(t)
	s := startSession(t, onlyPort(port))
	proto := testenv.HelperAsUser(t, fmt.Sprintf("markedfail %d 0", port), 65534)
	ns := func() {
		t.Helper()
		cmd := exec.Command(proto.Path, proto.Args[1:]...)
		cmd.Env = proto.Env
		id := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: id, GidMappings: id}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "errno "+strconv.Itoa(int(syscall.EADDRINUSE))) {
			t.Fatalf("a namespace's listen and failing bind: %q %v", out, err)
		}
	}

	// Namespaces until the kernel has reused inodes often enough (it
	// frees a namespace in the background, so not every one is reused).
	made, reused := 0, 0
	for ; made < 900 && reused < 20; made++ {
		ns()
		if made%50 == 49 {
			reused = s.inodesReused(port, made+1)
		}
	}
	reused = s.inodesReused(port, made)
	if reused == 0 {
		t.Fatalf("%d namespaces, none with an inode of another: the kernel reused none, the attack did not happen", made)
	}
	st := s.story(port)
	var limits map[string]any
	for _, r := range s.out.records(t) {
		if r["type"] == events.TypeStart {
			limits, _ = r["limits"].(map[string]any)
		}
	}
	_, noCookies := limits["netns_cookie"]
	for _, r := range st.recovered {
		if noCookies {
			// The documented limit of kernels before 5.12 (5.10 here): the
			// start record said so, and this is what it means.
			t.Logf("recovered in namespace %d by pid %d: a namespace with a dead one's inode, which this kernel cannot tell apart", r.Netns, r.Process.PID)
			continue
		}
		t.Errorf("recovered in namespace %d by pid %d: no incident here ever recovered (every namespace's listener came before its failure)", r.Netns, r.Process.PID)
	}
	cookies := 0
	for _, f := range st.failures {
		if f.Process.NetnsCookie != 0 {
			cookies++
		}
	}
	if noCookies {
		t.Logf("this kernel has no namespace cookies: %v", limits["netns_cookie"])
	} else if cookies != len(st.failures) {
		t.Errorf("%d of %d failures carry their namespace's cookie; the start record says nothing is missing", cookies, len(st.failures))
	}
	t.Logf("%d namespaces, %d failures in a namespace whose inode an earlier one had", made, reused)
}

// inodesReused counts the port's failures (waiting for want of them) in a
// namespace whose inode an earlier failure's namespace had.
func (s *session) inodesReused(port, want int) int {
	s.t.Helper()
	st := s.waitStory(port, 30e9, "bind_failure", func(st story) bool { return len(st.failures) >= want })
	seen, reused := map[uint32]bool{}, 0
	for _, f := range st.failures {
		if seen[f.Process.Netns] {
			reused++
		}
		seen[f.Process.Netns] = true
	}
	return reused
}
