package events

import (
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/tracer"
)

var epoch = time.Date(2026, 11, 25, 10, 31, 2, 113_000_000, time.UTC)

func testClock(ns uint64) time.Time { return epoch.Add(time.Duration(ns)) }

func kernelEvent() tracer.BindwatchEvent {
	ev := tracer.BindwatchEvent{
		TsNs: 0, StartNs: 0, Pid: 4242, Tid: 4243, Ppid: 1, Uid: 1000, Gid: 1000, Netns: 4026531833,
		Err: uint32(syscall.EADDRINUSE), Family: syscall.AF_INET6, SockType: syscall.SOCK_STREAM,
		Protocol: syscall.IPPROTO_TCP, Port: 8080, Syscall: uint8(tracer.BindwatchBwSyscallBW_SYSCALL_BIND),
		Hook:      uint8(tracer.BindwatchBwHookBW_HOOK_INET6BIND),
		SockFlags: uint8(tracer.BindwatchBwSockFlagBW_SOCK_REUSEADDR | tracer.BindwatchBwSockFlagBW_SOCK_V6ONLY),
		CgroupId:  77, CapEffective: 1 << 10,
	}
	copy(ev.Addr[:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	for i, c := range "python3" {
		ev.Comm[i] = int8(c)
	}
	args := "python3\x00-m\x00http.server\x008080\x00"
	for i := range args {
		ev.Args[i] = int8(args[i])
	}
	ev.ArgsLen = uint16(len(args))
	return ev
}

func TestFromKernel(t *testing.T) {
	ev := kernelEvent()
	f := FromKernel(&ev, "fentry", "web1", testClock)
	if f.Type != TypeFailure || f.Version != Version || f.Host != "web1" || f.Backend != "fentry" {
		t.Errorf("envelope %+v", f)
	}
	if f.Hook != "fexit/inet6_bind" || f.Syscall != "bind" || f.Errno != "EADDRINUSE" || f.ErrnoCode != 98 {
		t.Errorf("hook/syscall/errno = %s %s %s %d", f.Hook, f.Syscall, f.Errno, f.ErrnoCode)
	}
	if f.Proto != "tcp" || f.Family != "ipv6" || f.Addr != "2001:db8::1" || f.Port != 8080 {
		t.Errorf("request = %s %s %s %d", f.Proto, f.Family, f.Addr, f.Port)
	}
	if !f.Socket.ReuseAddr || f.Socket.ReusePort || f.Socket.V6Only == nil || !*f.Socket.V6Only {
		t.Errorf("socket = %+v", f.Socket)
	}
	p := f.Process
	if p.PID != 4242 || p.TID != 4243 || p.UID != 1000 || p.Comm != "python3" || p.CgroupID != 77 || p.Netns != 4026531833 {
		t.Errorf("process = %+v", p)
	}
	if !slices.Equal(p.Cmdline, []string{"python3", "-m", "http.server", "8080"}) {
		t.Errorf("cmdline = %q", p.Cmdline)
	}
	if p.CapNetBindService == nil || !*p.CapNetBindService {
		t.Error("cap_net_bind_service not decoded from the capability set")
	}
	if len(f.Holders) != 0 || f.Holders == nil {
		t.Errorf("holders = %#v, want an empty list (no kernel record)", f.Holders)
	}
}

func TestFromKernelRecordedHolder(t *testing.T) {
	ev := kernelEvent()
	ev.Family = syscall.AF_INET
	ev.HasHolder = 1
	ev.Holder = tracer.BindwatchHolderRec{Inode: 99, Tgid: 17, Ppid: 1, Uid: 33, Family: syscall.AF_INET, Port: 8080, BoundNs: uint64(time.Second)}
	copy(ev.Holder.Addr[:], []byte{10, 0, 0, 1})
	ev.Holder.Comm[0] = 'x'
	f := FromKernel(&ev, "tracepoint", "h", testClock)
	if len(f.Holders) != 1 {
		t.Fatalf("holders = %+v", f.Holders)
	}
	h := f.Holders[0]
	if h.Source != Recorded || h.State != "LISTEN" || h.Addr != "10.0.0.1" || h.Inode != 99 || h.Processes[0].PID != 17 || h.Processes[0].Comm != "x" {
		t.Errorf("holder = %+v", h)
	}
	if !h.Since.Equal(epoch.Add(time.Second)) {
		t.Errorf("since = %v", h.Since)
	}
	ev.Holder.BoundNs = 0 // seeded at start: listen time unknown
	if f := FromKernel(&ev, "tracepoint", "h", testClock); !f.Holders[0].Since.IsZero() {
		t.Errorf("seeded holder has since %v, want none", f.Holders[0].Since)
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                     nil,
		"a\x00":                {"a"},
		"a\x00b c\x00\x00\x00": {"a", "b c"},
		"cut-at-limi":          {"cut-at-limi"},
	} {
		if got := SplitArgs([]byte(in)); !slices.Equal(got, want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTextFailure(t *testing.T) {
	ev := kernelEvent()
	ev.Family = syscall.AF_INET
	ev.Addr = [16]uint8{}
	f := FromKernel(&ev, "tracepoint", "h", testClock)
	f.Process.Cmdline = []string{"python3", "-c", "import x\nrun()"}
	f.Holders = []Holder{{Source: SeenLive, State: "LISTEN", Addr: "0.0.0.0", Port: 8080,
		Processes: []Process{{PID: 4000, Cmdline: []string{"nginx: master process"}}, {PID: 4001}}}}
	f.Diagnosis, f.Hint = "port 8080 is held by nginx.", "Stop nginx."
	got := Text(&f)
	line, rest, _ := strings.Cut(got, "\n")
	want := epoch.Local().Format("15:04:05.000") + " EADDRINUSE bind tcp 0.0.0.0:8080 pid 4242 (python3 -c import x run()) uid 1000 reuseaddr=on <- held by pid 4000 (nginx: master process) LISTEN 0.0.0.0:8080 +1 process"
	if line != want {
		t.Errorf("text line\n got %q\nwant %q", line, want)
	}
	if rest != "  why: port 8080 is held by nginx.\n  fix: Stop nginx." {
		t.Errorf("continuation %q", rest)
	}
}

func TestHostPort(t *testing.T) {
	for _, c := range []struct {
		addr string
		want string
	}{{"0.0.0.0", "0.0.0.0:80"}, {"::", "[::]:80"}, {"::ffff:10.0.0.1", "[::ffff:10.0.0.1]:80"}} {
		if got := HostPort(c.addr, 80); got != c.want {
			t.Errorf("HostPort(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
}

// JSON lines: one object per Write, whole, in the documented field names.
func TestWriterJSON(t *testing.T) {
	var b strings.Builder
	w, err := NewWriter(&b, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(&Lost{Type: TypeLost, Version: Version, Time: epoch, Host: "h", Count: 3})
	w.Write(&Stop{Type: TypeStop, Version: Version, Time: epoch, Host: "h", Failures: 5, Reported: 1, Folded: 1, Lost: 3})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), b.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["count"] != 3.0 || m["time"] != "2026-11-25T10:31:02.113Z" {
		t.Errorf("lost line %s (%v)", lines[0], err)
	}
	m = nil
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m["type"] != "stop" || m["version"] != float64(Version) ||
		m["failures"] != 5.0 || m["reported"] != 1.0 || m["folded"] != 1.0 || m["lost"] != 3.0 || m["host"] != "h" {
		t.Errorf("stop line %s (%v): want failures 5, reported 1, folded 1, lost 3", lines[1], err)
	}
	if _, err := NewWriter(&b, "yaml"); err == nil {
		t.Error("NewWriter accepted format yaml")
	}
}
