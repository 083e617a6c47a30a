package tracer

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

var epoch = time.Date(2026, 11, 25, 10, 31, 2, 113_000_000, time.UTC)

func testClock(ns uint64) time.Time { return epoch.Add(time.Duration(ns)) }

func kernelEvent() bindwatchEvent {
	ev := bindwatchEvent{
		TsNs: 0, StartNs: 0, Pid: 4242, Tid: 4243, Ppid: 1, Uid: 1000, Gid: 1000, Netns: 4026531833,
		Err: uint32(syscall.EADDRINUSE), Family: syscall.AF_INET6, SockType: syscall.SOCK_STREAM,
		Protocol: syscall.IPPROTO_TCP, Port: 8080, Syscall: uint8(bindwatchBwSyscallBW_SYSCALL_BIND),
		Hook:      uint8(bindwatchBwHookBW_HOOK_INET6BIND),
		SockFlags: uint8(bindwatchBwSockFlagBW_SOCK_REUSEADDR | bindwatchBwSockFlagBW_SOCK_V6ONLY),
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
	f := fromKernel(&ev, fentryBackend{}, testClock)
	if f.Type != events.TypeFailure || f.Version != events.Version || f.Backend != "fentry" {
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
	ev.Holder = bindwatchHolderRec{Inode: 99, Tgid: 17, Ppid: 1, Uid: 33, Family: syscall.AF_INET, Port: 8080, BoundNs: uint64(time.Second)}
	copy(ev.Holder.Addr[:], []byte{10, 0, 0, 1})
	ev.Holder.Comm[0] = 'x'
	f := fromKernel(&ev, tracepointBackend{}, testClock)
	if len(f.Holders) != 1 {
		t.Fatalf("holders = %+v", f.Holders)
	}
	h := f.Holders[0]
	if h.Source != events.Recorded || h.State != "LISTEN" || h.Addr != "10.0.0.1" || h.Inode != 99 || h.Processes[0].PID != 17 || h.Processes[0].Comm != "x" {
		t.Errorf("holder = %+v", h)
	}
	if !h.Since.Equal(epoch.Add(time.Second)) {
		t.Errorf("since = %v", h.Since)
	}
	ev.Holder.BoundNs = 0 // seeded at start: listen time unknown
	if f := fromKernel(&ev, tracepointBackend{}, testClock); !f.Holders[0].Since.IsZero() {
		t.Errorf("seeded holder has since %v, want none", f.Holders[0].Since)
	}
}

// argvEvent is what the kernel captures of argv (fill_args): all of it
// when it fits, else its head and its tail.
func argvEvent(argv []string) bindwatchEvent {
	const head, tail = int(bindwatchBwArgsLenBW_ARGS_HEAD), int(bindwatchBwArgsLenBW_ARGS_TAIL)
	var ev bindwatchEvent
	b := []byte(strings.Join(argv, "\x00") + "\x00")
	ev.ArgsTotal = uint32(len(b))
	put := func(at int, p []byte) {
		for i, c := range p {
			ev.Args[at+i] = int8(c)
		}
	}
	if len(b) <= head+tail {
		put(0, b)
		ev.ArgsLen = uint16(len(b))
		return ev
	}
	put(0, b[:head])
	put(head, b[len(b)-tail:])
	ev.ArgsLen, ev.ArgsTailLen = uint16(head), uint16(tail)
	return ev
}

func TestCapturedArgs(t *testing.T) {
	classpath := strings.Repeat("/opt/app/lib/some-library-1.2.3.jar:", 280) // ~10 KB
	for _, c := range []struct {
		name          string
		argv, want    []string
		wantTruncated bool
	}{
		{"fits", []string{"nginx", "-g", "daemon off;"}, []string{"nginx", "-g", "daemon off;"}, false},
		{"java", []string{"java", "-Xmx1g", "-cp", classpath, "com.example.Main", "--server.port=8080"},
			[]string{"java", "-Xmx1g", "-cp", events.CmdlineGap, "com.example.Main", "--server.port=8080"}, true},
		// A secret cut by either edge is left out, not shown in part.
		{"cut secrets", []string{"app", strings.Repeat("a", 240), "--password=" + strings.Repeat("s", 600)},
			[]string{"app", strings.Repeat("a", 240), events.CmdlineGap}, true},
		// The tail begins inside --password: its value goes with it.
		{"tail cuts a secret flag", []string{"app", strings.Repeat("a", 600), "--password", "hunter2", strings.Repeat("b", 236)},
			[]string{"app", events.CmdlineGap, strings.Repeat("b", 236)}, true},
		// The head ends with --password: its value is in the gap.
		{"head ends with a secret flag", []string{"app", strings.Repeat("a", 240), "--password", "hunter2" + strings.Repeat("s", 600), "tail"},
			[]string{"app", strings.Repeat("a", 240), "--password", events.CmdlineGap, "tail"}, true},
	} {
		ev := argvEvent(c.argv)
		got, truncated := capturedArgs(&ev)
		if !slices.Equal(got, c.want) || truncated != c.wantTruncated {
			t.Errorf("%s: capturedArgs = %q (truncated %v), want %q (%v)", c.name, got, truncated, c.want, c.wantTruncated)
		}
	}
}

// The mark every prober sets (host.ProbeMark) is the one the BPF programs
// skip (BW_PROBE_MARK).
func TestProbeMarkMatchesBPF(t *testing.T) {
	if ProbeMark != host.ProbeMark {
		t.Fatalf("BW_PROBE_MARK is %#x, host.ProbeMark %#x: change them together", ProbeMark, host.ProbeMark)
	}
}
