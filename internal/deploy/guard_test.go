package deploy

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestGuardRefusals checks the refusal rules against real processes:
// pid 1, this process, its parent and grandparent, a kernel thread, a
// process in another network namespace — and that an ordinary child is
// not refused.
func TestGuardRefusals(t *testing.T) {
	own := testenv.Netns(t)
	g := newGuard(own, false)

	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })

	grandparent, err := host.ReadStat(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	kthreadd := 2 // the kernel's thread creator, a kernel thread on every Linux
	if !isKernelThread(kthreadd) {
		t.Fatalf("pid 2 is not a kernel thread here: %s", firstLine("/proc/2/stat"))
	}
	cases := []struct {
		name string
		pid  int
		want string // substring of the refusal; "" for none
	}{
		{"pid 1", 1, "pid 1"},
		{"itself", os.Getpid(), "bindwatch itself"},
		{"its parent", os.Getppid(), "bindwatch's parent"},
		{"kernel thread", kthreadd, "kernel thread"},
		{"an ordinary child", child.Process.Pid, ""},
	}
	if grandparent.PPID > 1 {
		cases = append(cases, struct {
			name string
			pid  int
			want string
		}{"its grandparent", grandparent.PPID, "ancestor"})
	}
	for _, c := range cases {
		p := process(c.pid)
		got := g.refusal(&p)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s (pid %d): refusal %q, want one saying %q", c.name, c.pid, got, c.want)
		}
	}
}

func TestGuardOtherNetns(t *testing.T) {
	testenv.RequireRoot(t) // unshare -n
	own := testenv.Netns(t)
	other := exec.Command("unshare", "--net", "sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	var p events.Process
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(10 * time.Millisecond) {
		p = process(other.Process.Pid) // unshare execs sleep: same pid, new netns
		if p.Netns != own && p.Comm == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare --net sleep: still in netns %d (%s)", p.Netns, p.Comm)
		}
	}
	if got := newGuard(own, false).refusal(&p); !strings.Contains(got, "another network namespace") || !strings.Contains(got, "--all-netns") {
		t.Errorf("process in netns %d: refusal %q, want one naming the other namespace and --all-netns", p.Netns, got)
	}
	if got := newGuard(own, true).refusal(&p); got != "" {
		t.Errorf("with all netns: refusal %q, want none", got)
	}
}

func process(pid int) events.Process {
	p := events.Process{PID: pid}
	resolve.FillProcess(&p)
	return p
}

func firstLine(path string) string {
	b, _ := os.ReadFile(path)
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func TestSignalNamed(t *testing.T) {
	for in, want := range map[string]string{"TERM": "SIGTERM", "sigint": "SIGINT", "SIGHUP": "SIGHUP", "9": "SIGKILL", "usr1": "SIGUSR1"} {
		sig, err := SignalNamed(in)
		if err != nil || SignalName(sig) != want {
			t.Errorf("SignalNamed(%q) = %v (%s), %v; want %s", in, sig, SignalName(sig), err, want)
		}
	}
	for _, bad := range []string{"", "TERMINATE", "0", "65", "-1"} {
		if _, err := SignalNamed(bad); err == nil {
			t.Errorf("SignalNamed(%q) accepted", bad)
		}
	}
}
