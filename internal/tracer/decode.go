package tracer

import (
	"bytes"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/redact"
)

// hookNames name the kernel hooks as users can find them in the kernel:
// tracepoints by their tracefs path, kernel functions by name (the
// backend says whether fexit or a kretprobe saw it).
var hookNames = map[bindwatchBwHook]string{
	bindwatchBwHookBW_HOOK_TP_EXIT_BIND:       "tracepoint/syscalls/sys_exit_bind",
	bindwatchBwHookBW_HOOK_TP_EXIT_LISTEN:     "tracepoint/syscalls/sys_exit_listen",
	bindwatchBwHookBW_HOOK_INET_BIND:          "inet_bind",
	bindwatchBwHookBW_HOOK_INET6BIND:          "inet6_bind",
	bindwatchBwHookBW_HOOK_INET_LISTEN:        "inet_listen",
	bindwatchBwHookBW_HOOK_IOURING_BIND:       ioUringHook,
	bindwatchBwHookBW_HOOK_IOURING_LISTEN:     ioUringHook,
	bindwatchBwHookBW_HOOK_TP_EXIT_CONNECT:    "tracepoint/syscalls/sys_exit_connect",
	bindwatchBwHookBW_HOOK_TP_EXIT_SENDTO:     "tracepoint/syscalls/sys_exit_sendto",
	bindwatchBwHookBW_HOOK_TP_EXIT_SENDMSG:    "tracepoint/syscalls/sys_exit_sendmsg",
	bindwatchBwHookBW_HOOK_INET_HASH_CONNECT:  "inet_hash_connect",
	bindwatchBwHookBW_HOOK_INET_DGRAM_CONNECT: "inet_dgram_connect",
	bindwatchBwHookBW_HOOK_INET_SENDMSG:       "inet_sendmsg",
	bindwatchBwHookBW_HOOK_INET6SENDMSG:       "inet6_sendmsg",
}

// ioUringHook names the tracepoint backend's io_uring hook: the completion
// of an IORING_OP_BIND or IORING_OP_LISTEN request.
const ioUringHook = "tp_btf/io_uring_complete"

// hookName is the hook as "KIND/NAME": "fexit/inet_bind",
// "kretprobe/inet_listen", "tracepoint/syscalls/sys_exit_bind".
func hookName(b Backend, hook uint8) string {
	name := hookNames[bindwatchBwHook(hook)]
	if name == ioUringHook {
		return name
	}
	return b.hookKind() + name
}

var syscallNames = map[bindwatchBwSyscall]string{
	bindwatchBwSyscallBW_SYSCALL_BIND:    "bind",
	bindwatchBwSyscallBW_SYSCALL_LISTEN:  "listen",
	bindwatchBwSyscallBW_SYSCALL_CONNECT: "connect",
	bindwatchBwSyscallBW_SYSCALL_SENDTO:  "sendto",
	bindwatchBwSyscallBW_SYSCALL_SENDMSG: "sendmsg",
}

// syscallName names the kernel's syscall code: "bind" or "listen".
func syscallName(code uint8) string {
	return syscallNames[bindwatchBwSyscall(code)]
}

// protoName names an IP protocol number as ss(8) does.
func protoName(proto uint16) string {
	switch proto {
	case syscall.IPPROTO_TCP:
		return "tcp"
	case syscall.IPPROTO_UDP:
		return "udp"
	case 262: // IPPROTO_MPTCP
		return "mptcp"
	case syscall.IPPROTO_SCTP:
		return "sctp"
	case syscall.IPPROTO_UDPLITE:
		return "udplite"
	case syscall.IPPROTO_ICMP, syscall.IPPROTO_ICMPV6:
		return "icmp"
	}
	return "raw"
}

// familyName names an address family: "ipv4" or "ipv6".
func familyName(family uint16) string {
	if family == syscall.AF_INET6 {
		return "ipv6"
	}
	return "ipv4"
}

// formatAddr renders a kernel address of the given family.
func formatAddr(family uint16, addr [16]uint8) string {
	if family == syscall.AF_INET6 {
		return netip.AddrFrom16(addr).String()
	}
	return netip.AddrFrom4([4]byte(addr[:4])).String()
}

// Record is one kernel failure record, decoded: the failure as the kernel
// captured it. Nothing above the tracer sees the kernel's own layout.
type Record struct {
	Failure events.Failure
}

// decode turns the kernel's event into a Record.
func decode(ev *bindwatchEvent, backend Backend, clock bootClock) Record {
	return Record{Failure: fromKernel(ev, backend, clock)}
}

// bootClock turns the kernel's CLOCK_BOOTTIME nanoseconds into wall time.
type bootClock func(bootNS uint64) time.Time

// fromKernel decodes a kernel failure record. Everything it sets was
// captured in the kernel at the moment of failure; what only /proc or
// sock_diag can add is left for resolve (and the host name for the caller).
func fromKernel(ev *bindwatchEvent, backend Backend, clock bootClock) events.Failure {
	err := syscall.Errno(ev.Err)
	f := events.Failure{
		Header:    events.Header{Type: events.TypeFailure, Version: events.Version, Time: clock(ev.TsNs)},
		Backend:   backend.Name(),
		Hook:      hookName(backend, ev.Hook),
		Syscall:   syscallName(ev.Syscall),
		Errno:     events.ErrnoName(err),
		ErrnoCode: int(ev.Err),
		Proto:     protoName(ev.Protocol),
		Family:    familyName(ev.Family),
		Addr:      formatAddr(ev.Family, ev.Addr),
		Port:      ev.Port,
		Socket:    decodeSocket(ev),
		Process:   decodeProcess(ev, clock),
		Holders:   []events.Holder{},
	}
	if ev.Dfamily != 0 {
		f.Destination = &events.Destination{IP: formatAddr(ev.Dfamily, ev.Daddr), Port: ev.Dport}
	}
	if ev.HasHolder != 0 {
		h := decodeHolder(&ev.Holder, f.Proto, ev.Netns, clock)
		h.Processes[0].Exit = decodeExit(&ev.HolderExit, clock)
		h.Processes[0].OrigParentExit = decodeExit(&ev.ParentExit, clock)
		f.Holders = append(f.Holders, h)
	}
	return f
}

func decodeSocket(ev *bindwatchEvent) events.Socket {
	flag := func(b bindwatchBwSockFlag) bool { return ev.SockFlags&uint8(b) != 0 }
	s := events.Socket{
		ReuseAddr:     flag(bindwatchBwSockFlagBW_SOCK_REUSEADDR),
		ReusePort:     flag(bindwatchBwSockFlagBW_SOCK_REUSEPORT),
		Freebind:      flag(bindwatchBwSockFlagBW_SOCK_FREEBIND),
		BoundDevIndex: int(ev.BoundDevIf),
	}
	if ev.Family == syscall.AF_INET6 {
		v6only := flag(bindwatchBwSockFlagBW_SOCK_V6ONLY)
		s.V6Only = &v6only
	}
	return s
}

// capNetBindService is CAP_NET_BIND_SERVICE's bit in a capability set.
const capNetBindService = 10

func decodeProcess(ev *bindwatchEvent, clock bootClock) events.Process {
	gid := ev.Gid
	canBind := ev.CapEffective&(1<<capNetBindService) != 0
	cmdline, truncated := capturedArgs(ev)
	return events.Process{
		PID:               int(ev.Pid),
		TID:               int(ev.Tid),
		PPID:              int(ev.Ppid),
		UID:               ev.Uid,
		GID:               &gid,
		Comm:              cString(ev.Comm[:]),
		Cmdline:           cmdline,
		CmdlineTruncated:  truncated,
		CgroupID:          ev.CgroupId,
		Netns:             ev.Netns,
		NetnsCookie:       ev.NetnsCookie,
		StartTime:         clock(ev.StartNs),
		CapNetBindService: &canBind,
	}
}

func decodeHolder(rec *bindwatchHolderRec, proto string, netns uint32, clock bootClock) events.Holder {
	var since time.Time
	if rec.BoundNs != 0 { // 0: seeded at start, listen() time unknown
		since = clock(rec.BoundNs)
	}
	// The registry holds TCP listeners and bound UDP sockets.
	state := "LISTEN"
	if proto == "udp" {
		state = "UNCONN"
	}
	return events.Holder{
		Source: events.Recorded,
		Proto:  proto,
		State:  state,
		Addr:   formatAddr(rec.Family, rec.Addr),
		Port:   rec.Port,
		Inode:  rec.Inode,
		UID:    rec.Uid,
		Netns:  netns,
		Since:  since,
		Processes: []events.Process{{
			PID:       int(rec.Tgid),
			PPID:      int(rec.Ppid),
			UID:       rec.Uid,
			Comm:      cString(rec.Comm[:]),
			StartTime: clock(rec.StartNs),
		}},
	}
}

// decodeExit is how a process of a holder's lineage ended, nil when the
// kernel did not see it end. The code is the exiting thread's exit_code:
// the status in bits 8-15, or the killing signal in bits 0-6.
func decodeExit(v *bindwatchLineageVal, clock bootClock) *events.Exit {
	if v.ExitNs == 0 {
		return nil
	}
	e := &events.Exit{Time: clock(v.ExitNs)}
	if sig := int(v.ExitCode & 0x7f); sig != 0 {
		e.Signal = signalName(sig)
	} else {
		code := int(v.ExitCode>>8) & 0xff
		e.Code = &code
	}
	return e
}

// capturedArgs decodes the argv the kernel captured: all of it, or — when
// it did not fit — its head and its tail with one events.CmdlineGap
// argument between them (truncated). An argument cut by either edge is left
// out: a part of an argument cannot be told apart from a secret's value
// (the name that marks it may be in the part not captured), and the
// redaction rules must see whole arguments.
func capturedArgs(ev *bindwatchEvent) (args []string, truncated bool) {
	const head, tail = int(bindwatchBwArgsLenBW_ARGS_HEAD), int(bindwatchBwArgsLenBW_ARGS_TAIL)
	raw := int8Bytes(ev.Args[:])
	h := raw[:min(int(ev.ArgsLen), head+tail)]
	if uint32(len(h)) >= ev.ArgsTotal {
		return host.SplitArgs(h), false
	}
	// Cut: the head's last argument is whole only if it ends in its NUL.
	if i := bytes.LastIndexByte(h, 0); i >= 0 {
		h = h[:i+1]
	} else {
		h = nil
	}
	args = append(host.SplitArgs(h), events.CmdlineGap)
	if n := min(int(ev.ArgsTailLen), tail); n > 0 {
		// The tail begins inside an argument, unless by chance at its
		// start: everything up to the first NUL is left out either way.
		t := raw[head : head+n]
		if i := bytes.IndexByte(t, 0); i >= 0 {
			tailArgs := host.SplitArgs(t[i+1:])
			// The part left out may be the end of --password (say),
			// making the first whole argument its value: that goes too.
			if len(tailArgs) > 0 && !strings.HasPrefix(tailArgs[0], "-") && redact.MayEndSecretName(string(t[:i])) {
				tailArgs = tailArgs[1:]
			}
			args = append(args, tailArgs...)
		}
	}
	return args, true
}

func cString(c []int8) string {
	b := int8Bytes(c)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func int8Bytes(c []int8) []byte {
	b := make([]byte, len(c))
	for i, v := range c {
		b[i] = byte(v)
	}
	return b
}
