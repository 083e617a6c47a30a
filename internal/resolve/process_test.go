package resolve

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

func TestCgroupV2Path(t *testing.T) {
	in := "12:cpu,cpuacct:/legacy\n0::/system.slice/nginx.service\n"
	if got := cgroupV2Path([]byte(in)); got != "/system.slice/nginx.service" {
		t.Errorf("cgroupV2Path = %q", got)
	}
	if got := cgroupV2Path([]byte("3:memory:/x\n")); got != "" {
		t.Errorf("cgroup v1 only: %q, want empty", got)
	}
}

func TestUserNameFromPasswd(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/passwd"
	os.WriteFile(path, []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nbad line\nwww:x:33:33::/var/www:/usr/sbin/nologin\nalias:x:33:33::/:/bin/false\n"), 0o644)
	old := passwdPath
	passwdPath = path
	t.Cleanup(func() { passwdPath = old; passwd.names = nil })
	for uid, want := range map[uint32]string{0: "root", 33: "www", 1000: ""} {
		if got := userName(uid); got != want {
			t.Errorf("userName(%d) = %q, want %q", uid, got, want)
		}
	}
	// An edited file is read again.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(path, []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"), 0o644)
	if got := userName(1000); got != "alice" {
		t.Errorf("after an edit, userName(1000) = %q, want alice", got)
	}
}

func TestFillProcessSelf(t *testing.T) {
	p := events.Process{PID: os.Getpid(), Comm: "kept"}
	FillProcess(&p)
	exe, _ := os.Executable()
	if p.Exe != exe || p.Comm != "kept" || p.PPID != os.Getppid() || !slices.Equal(p.Cmdline, os.Args) {
		t.Errorf("FillProcess(self) = %+v, want exe %s, comm kept (not overwritten), ppid %d, cmdline %q", p, exe, os.Getppid(), os.Args)
	}
	if p.UID != uint32(os.Getuid()) || p.GID == nil || *p.GID != uint32(os.Getgid()) {
		t.Errorf("uid/gid = %d/%v, want %d/%d", p.UID, p.GID, os.Getuid(), os.Getgid())
	}
	if age := time.Since(p.StartTime); age < 0 || age > 10*time.Minute {
		t.Errorf("start time %v is %v ago", p.StartTime, age)
	}
	if p.Netns == 0 || !strings.HasPrefix(p.Cgroup, "/") {
		t.Errorf("netns %d, cgroup %q: want both", p.Netns, p.Cgroup)
	}
}

func TestFillProcessGone(t *testing.T) {
	p := events.Process{PID: 1 << 22} // above pid_max's ceiling: never a process
	FillProcess(&p)
	want := events.Process{PID: 1 << 22}
	if p.Exe != "" || p.Comm != "" || p.PPID != 0 || p.Cmdline != nil || p.GID != nil || p.User != "" || !p.StartTime.IsZero() || p.Cgroup != "" || p.Netns != 0 {
		t.Errorf("FillProcess of a missing process invented %+v, want %+v", p, want)
	}
}

func TestFillProcessReusedPID(t *testing.T) {
	// Same pid, but the kernel saw a process that started an hour earlier:
	// that one has exited and the pid belongs to another process now.
	self := events.Process{PID: os.Getpid()}
	FillProcess(&self)
	p := events.Process{PID: os.Getpid(), StartTime: self.StartTime.Add(-time.Hour)}
	FillProcess(&p)
	if p.Exe != "" || p.Comm != "" || p.Cmdline != nil {
		t.Errorf("a reused pid lent its details: %+v", p)
	}
	q := events.Process{PID: os.Getpid(), StartTime: self.StartTime.Add(3 * time.Millisecond)}
	FillProcess(&q)
	if q.Exe != self.Exe {
		t.Errorf("a matching start time was refused: %+v", q)
	}
}

// A command line the kernel captured in part is completed from /proc only
// while it is still the same: not after the process exec'd (which keeps
// its pid and its start time).
func TestFillProcessCompletesOnlyTheSameCommandLine(t *testing.T) {
	execNow := filepath.Join(t.TempDir(), "exec")
	argv := []string{"-cp", strings.Repeat("/opt/app/lib/some-library-1.2.3.jar:", 280), "com.example.Main", "--server.port=8080"}
	h := testenv.StartHelperArgs(t, "execwhen "+execNow, argv...)
	full := append([]string{testenv.HelperBinary(), "-test.run=^$"}, argv...)
	// What the kernel captured, decoded: head and tail around the gap.
	captured := []string{testenv.HelperBinary(), "-test.run=^$", "-cp", events.CmdlineGap, "com.example.Main", "--server.port=8080"}
	st, err := host.ReadStat(h.PID)
	if err != nil {
		t.Fatal(err)
	}
	p := events.Process{PID: h.PID, StartTime: st.Started(), Cmdline: captured, CmdlineTruncated: true}
	FillProcess(&p)
	if !slices.Equal(p.Cmdline, full) || p.CmdlineTruncated || p.Exe == "" {
		t.Errorf("still running: cmdline %.200q (truncated %v), exe %q, want the whole one and the exe from /proc", p.Cmdline, p.CmdlineTruncated, p.Exe)
	}

	if err := os.WriteFile(execNow, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", h.PID)); strings.Contains(string(b), "exec'd") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper did not exec")
		}
	}
	if st2, err := host.ReadStat(h.PID); err != nil || !st2.Started().Equal(st.Started()) {
		t.Fatalf("after exec: start %v (%v), want the same %v", st2.Started(), err, st.Started())
	}
	q := events.Process{PID: h.PID, StartTime: st.Started(), Cmdline: captured, CmdlineTruncated: true}
	FillProcess(&q)
	if !slices.Equal(q.Cmdline, captured) || !q.CmdlineTruncated {
		t.Errorf("after exec: cmdline %q (truncated %v), want the kernel's capture kept, truncated", q.Cmdline, q.CmdlineTruncated)
	}
	// Nor is its executable taken for the one that failed; the same holds
	// for a command line captured whole.
	short := events.Process{PID: h.PID, StartTime: st.Started(), Cmdline: []string{testenv.HelperBinary(), "-test.run=^$", "--short"}}
	FillProcess(&short)
	if q.Exe != "" || short.Exe != "" {
		t.Errorf("after exec: exe %q and %q, want none (the process runs another command line)", q.Exe, short.Exe)
	}
}
