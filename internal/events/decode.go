package events

import (
	"bytes"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/tracer"
)

// hookNames name the kernel hooks as users can find them in the kernel:
// tracepoints by their tracefs path, kernel functions by name (the
// backend says whether fexit or a kretprobe saw it).
var hookNames = map[tracer.BindwatchBwHook]string{
	tracer.BindwatchBwHookBW_HOOK_TP_EXIT_BIND:   "tracepoint/syscalls/sys_exit_bind",
	tracer.BindwatchBwHookBW_HOOK_TP_EXIT_LISTEN: "tracepoint/syscalls/sys_exit_listen",
	tracer.BindwatchBwHookBW_HOOK_INET_BIND:      "inet_bind",
	tracer.BindwatchBwHookBW_HOOK_INET6BIND:      "inet6_bind",
	tracer.BindwatchBwHookBW_HOOK_INET_LISTEN:    "inet_listen",
}

// hookName is the hook as "KIND/NAME": "fexit/inet_bind",
// "kretprobe/inet_listen", "tracepoint/syscalls/sys_exit_bind".
func hookName(backend string, hook uint8) string {
	name := hookNames[tracer.BindwatchBwHook(hook)]
	switch backend {
	case "fentry":
		return "fexit/" + name
	case "kprobe":
		return "kretprobe/" + name
	}
	return name
}

var syscallNames = map[tracer.BindwatchBwSyscall]string{
	tracer.BindwatchBwSyscallBW_SYSCALL_BIND:   "bind",
	tracer.BindwatchBwSyscallBW_SYSCALL_LISTEN: "listen",
}

// SyscallName names the kernel's syscall code: "bind" or "listen".
func SyscallName(code uint8) string {
	return syscallNames[tracer.BindwatchBwSyscall(code)]
}

// ErrnoName is the symbolic name of the errors bindwatch traces.
func ErrnoName(e syscall.Errno) string {
	switch e {
	case syscall.EADDRINUSE:
		return "EADDRINUSE"
	case syscall.EADDRNOTAVAIL:
		return "EADDRNOTAVAIL"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EINVAL:
		return "EINVAL"
	}
	return "E" + strings.ToUpper(strings.ReplaceAll(e.Error(), " ", "_"))
}

// ProtoName names an IP protocol number as ss(8) does.
func ProtoName(proto uint16) string {
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

// FamilyName names an address family: "ipv4" or "ipv6".
func FamilyName(family uint16) string {
	if family == syscall.AF_INET6 {
		return "ipv6"
	}
	return "ipv4"
}

// FormatAddr renders a kernel address of the given family.
func FormatAddr(family uint16, addr [16]uint8) string {
	if family == syscall.AF_INET6 {
		return netip.AddrFrom16(addr).String()
	}
	return netip.AddrFrom4([4]byte(addr[:4])).String()
}

// Clock turns the kernel's CLOCK_BOOTTIME nanoseconds into wall time.
type Clock func(bootNS uint64) time.Time

// FromKernel decodes a kernel failure record. Everything it sets was
// captured in the kernel at the moment of failure; what only /proc or
// sock_diag can add is left for resolve.
func FromKernel(ev *tracer.BindwatchEvent, backend, host string, clock Clock) Failure {
	err := syscall.Errno(ev.Err)
	f := Failure{
		Type:      TypeFailure,
		Version:   Version,
		Time:      clock(ev.TsNs),
		Host:      host,
		Backend:   backend,
		Hook:      hookName(backend, ev.Hook),
		Syscall:   SyscallName(ev.Syscall),
		Errno:     ErrnoName(err),
		ErrnoCode: int(ev.Err),
		Proto:     ProtoName(ev.Protocol),
		Family:    FamilyName(ev.Family),
		Addr:      FormatAddr(ev.Family, ev.Addr),
		Port:      ev.Port,
		Socket:    decodeSocket(ev),
		Process:   decodeProcess(ev, clock),
		Holders:   []Holder{},
	}
	if ev.HasHolder != 0 {
		f.Holders = append(f.Holders, decodeHolder(&ev.Holder, f.Proto, ev.Netns, clock))
	}
	return f
}

func decodeSocket(ev *tracer.BindwatchEvent) Socket {
	flag := func(b tracer.BindwatchBwSockFlag) bool { return ev.SockFlags&uint8(b) != 0 }
	s := Socket{
		ReuseAddr:     flag(tracer.BindwatchBwSockFlagBW_SOCK_REUSEADDR),
		ReusePort:     flag(tracer.BindwatchBwSockFlagBW_SOCK_REUSEPORT),
		Freebind:      flag(tracer.BindwatchBwSockFlagBW_SOCK_FREEBIND),
		BoundDevIndex: int(ev.BoundDevIf),
	}
	if ev.Family == syscall.AF_INET6 {
		v6only := flag(tracer.BindwatchBwSockFlagBW_SOCK_V6ONLY)
		s.V6Only = &v6only
	}
	return s
}

// capNetBindService is CAP_NET_BIND_SERVICE's bit in a capability set.
const capNetBindService = 10

func decodeProcess(ev *tracer.BindwatchEvent, clock Clock) Process {
	gid := ev.Gid
	canBind := ev.CapEffective&(1<<capNetBindService) != 0
	return Process{
		PID:               int(ev.Pid),
		TID:               int(ev.Tid),
		PPID:              int(ev.Ppid),
		UID:               ev.Uid,
		GID:               &gid,
		Comm:              cString(ev.Comm[:]),
		Cmdline:           SplitArgs(int8Bytes(ev.Args[:min(int(ev.ArgsLen), len(ev.Args))])),
		CgroupID:          ev.CgroupId,
		Netns:             ev.Netns,
		StartTime:         clock(ev.StartNs),
		CapNetBindService: &canBind,
	}
}

func decodeHolder(rec *tracer.BindwatchHolderRec, proto string, netns uint32, clock Clock) Holder {
	var since time.Time
	if rec.BoundNs != 0 { // 0: seeded at start, listen() time unknown
		since = clock(rec.BoundNs)
	}
	// The registry holds TCP listeners and bound UDP sockets.
	state := "LISTEN"
	if proto == "udp" {
		state = "UNCONN"
	}
	return Holder{
		Source: Recorded,
		Proto:  proto,
		State:  state,
		Addr:   FormatAddr(rec.Family, rec.Addr),
		Port:   rec.Port,
		Inode:  rec.Inode,
		UID:    rec.Uid,
		Netns:  netns,
		Since:  since,
		Processes: []Process{{
			PID:       int(rec.Tgid),
			PPID:      int(rec.Ppid),
			UID:       rec.Uid,
			Comm:      cString(rec.Comm[:]),
			StartTime: clock(rec.StartNs),
		}},
	}
}

// SplitArgs turns a NUL-separated argv block into its arguments. A block
// cut at the kernel's capture limit keeps its truncated last argument.
func SplitArgs(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
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
