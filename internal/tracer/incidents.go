package tracer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// Incident programs: every backend loads them, as BTF-typed raw
// tracepoints (tp_btf, 5.5+; 5.10 has both tracepoints), and attaches them
// only while the kernel watches a port with an open incident (WatchPort
// to HooksLinger after the last UnwatchPort). They fire for every TCP state change and every
// signal of the host, and even a program that returns at once costs an
// ignored signal 5-9% (the tracepoint's own machinery, BenchmarkIncidentFloor):
// a host without an outage should not pay that.
var incidentTracepoints = []tpProg{
	{"sock", "inet_sock_set_state", "incident_sock_state"},
	{"signal", "signal_generate", "incident_signal"},
}

// MaxIncidents is how many ports the kernel watches at once (struct
// incident_ports); more incidents are still told from their failures.
const MaxIncidents = 1024

// PortKey names a port in the kernel's incident maps.
type PortKey struct {
	Netns uint32
	Proto string // "tcp" or "udp"
	Port  uint16
}

func (k PortKey) kernel() (bindwatchHolderKey, bool) {
	hk := bindwatchHolderKey{Netns: k.Netns, Port: k.Port}
	switch k.Proto {
	case "tcp", "mptcp":
		hk.Proto = syscall.IPPROTO_TCP
	case "udp":
		hk.Proto = syscall.IPPROTO_UDP
	default:
		return hk, false
	}
	return hk, true
}

// udpUnhash is the kernel function every UDP socket leaves its port
// through; the fentry and kprobe backends hook it to see a UDP holder's
// release (the tracepoint backend has no such hook, and polls).
const udpUnhash = "udp_lib_unhash"

// attachIncidents checks that the incident tracepoint programs attach
// (and detaches them again: WatchPort attaches them when an incident
// opens), and attaches the UDP release hook. That hook is optional:
// without it (a kernel that inlined or renamed the function) a poll sees
// UDP holders go, as on the tracepoint backend.
func (t *Tracer) attachIncidents(coll *ebpf.Collection) ([]link.Link, error) {
	hooks, err := attachIncidentHooks(coll)
	if err != nil {
		return nil, err
	}
	closeLinks(hooks)
	if t.backend.udpReleaseProgram() == "" {
		return nil, nil
	}
	l, err := t.backend.attachUDPRelease(coll)
	if err != nil {
		return nil, nil
	}
	t.udpReleases = true
	return []link.Link{l}, nil
}

// attachIncidentHooks attaches the incident tracepoint programs.
func attachIncidentHooks(coll *ebpf.Collection) ([]link.Link, error) {
	var links []link.Link
	for _, tp := range incidentTracepoints {
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[tp.prog]})
		if err != nil {
			closeLinks(links)
			return nil, fmt.Errorf("attach tp_btf %s:%s (incident records): %w (hint: needs a kernel with BTF and tp_btf, 5.5+)", tp.group, tp.event, err)
		}
		links = append(links, l)
	}
	// The client impact counter: loaded only where the kernel has it.
	if p := coll.Programs[impactProgram]; p != nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			closeLinks(links)
			return nil, fmt.Errorf("attach tp_btf skb:kfree_skb (client impact): %w (hint: needs a kernel with BTF and tp_btf, 5.17+)", err)
		}
		links = append(links, l)
	}
	return links, nil
}

// IncidentHooksAttached tells whether the incident tracepoint programs are
// attached: from the first WatchPort to HooksLinger after the last
// UnwatchPort.
func (t *Tracer) IncidentHooksAttached() bool {
	return t.hooks.attached()
}

// SeesUDPReleases tells whether the kernel reports a UDP holder's release
// (fentry and kprobe backends); otherwise only a poll sees it.
func (t *Tracer) SeesUDPReleases() bool { return t.udpReleases }

// NoHolders tells whether the holder registry is off (--no-holders): then
// the kernel cannot tell a listener's close from a failed listen(), and
// releases are only polled.
func (t *Tracer) NoHolders() bool { return t.noHolders }

// WatchPort makes the kernel report released, signal and recovered
// records for the port, and signals sent to the processes pids (its
// holders); cookie is the port's network namespace's (the failure's
// netns_cookie, 0 where the kernel has none). It returns false when the
// kernel's map is full.
func (t *Tracer) WatchPort(k PortKey, cookie uint64, pids []int) (bool, error) {
	hk, ok := k.kernel()
	if !ok {
		return false, nil
	}
	if !t.watched[k] {
		if len(t.watched) >= MaxIncidents {
			return false, nil
		}
		// A new incident's client impact counts from zero.
		t.maps.IncidentImpact.Delete(hk)
		// The value is the namespace's cookie (0: not known): the kernel
		// reports only for sockets of that namespace, not of a new one
		// that got its inode.
		if err := t.maps.IncidentPorts.Put(hk, cookie); err != nil {
			return false, fmt.Errorf("watch port %d/%s: %w", k.Port, k.Proto, err)
		}
		t.watched[k] = true
		if err := t.maps.IncidentCount.Put(uint32(0), uint32(len(t.watched))); err != nil {
			return false, fmt.Errorf("watch port %d/%s: %w", k.Port, k.Proto, err)
		}
		// After the maps: attached, the programs report for the port.
		if err := t.hooks.watching(); err != nil {
			return false, fmt.Errorf("watch port %d/%s: %w", k.Port, k.Proto, err)
		}
	}
	for _, pid := range pids {
		// A full map leaves that holder's signals unseen, nothing else.
		t.maps.IncidentHolders.Put(uint32(pid), hk)
	}
	return true, nil
}

// UnwatchPort stops the kernel's records for the port and forgets its
// holders.
func (t *Tracer) UnwatchPort(k PortKey, pids []int) error {
	hk, ok := k.kernel()
	if !ok || !t.watched[k] {
		return nil
	}
	delete(t.watched, k)
	t.maps.IncidentPorts.Delete(hk)
	t.maps.IncidentImpact.Delete(hk)
	for _, pid := range pids {
		var have bindwatchHolderKey
		if t.maps.IncidentHolders.Lookup(uint32(pid), &have) == nil && have == hk {
			t.maps.IncidentHolders.Delete(uint32(pid))
		}
	}
	if len(t.watched) == 0 {
		// No incident open: after HooksLinger, unless one opens again,
		// the host's signals and TCP state changes go back to costing
		// nothing. (Attaching takes 5-30 ms of text patching: a restart
		// storm should not pay it per incident.)
		t.hooks.idle(t.HooksLinger)
	}
	return t.maps.IncidentCount.Put(uint32(0), uint32(len(t.watched)))
}

// DefaultHooksLinger is how long the incident tracepoint programs stay
// attached after the last incident closed.
const DefaultHooksLinger = 30 * time.Second

// ReadIncident returns the next incident record the kernel wrote, without
// blocking: a *events.Released, *events.Signal or *events.Recovered, with
// what the kernel knows (the caller adds host, attempts and outage). It
// returns nil when there is none.
func (t *Tracer) ReadIncident() (events.Record, error) {
	return t.WaitIncident(time.Now())
}

// WaitIncident is ReadIncident waiting until `until` for a record (nil
// then). One goroutine at a time may read; Close ends a wait with
// os.ErrClosed.
func (t *Tracer) WaitIncident(until time.Time) (events.Record, error) {
	var rec ringbuf.Record
	t.incidents.SetDeadline(until)
	if err := t.incidents.ReadInto(&rec); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil
		}
		return nil, fmt.Errorf("read incident ring buffer: %w", err)
	}
	var ev bindwatchIncidentEvent
	if len(rec.RawSample) < int(unsafe.Sizeof(ev)) {
		return nil, fmt.Errorf("short incident record: %d bytes, want %d (hint: the BPF object and the binary disagree; run make generate)", len(rec.RawSample), unsafe.Sizeof(ev))
	}
	ev = *(*bindwatchIncidentEvent)(unsafe.Pointer(&rec.RawSample[0]))
	return decodeIncident(&ev, t.Time), nil
}

func decodeIncident(ev *bindwatchIncidentEvent, clock bootClock) events.Record {
	at := clock(ev.TsNs)
	proto := protoName(uint16(ev.Proto))
	actor := events.Process{
		PID: int(ev.Pid), TID: int(ev.Tid), PPID: int(ev.Ppid), UID: ev.Uid,
		Comm:      cString(ev.Comm[:]),
		Cmdline:   host.SplitArgs(int8Bytes(ev.Args[:min(int(ev.ArgsLen), len(ev.Args))])),
		StartTime: clock(ev.StartNs),
	}
	switch bindwatchBwIncidentKind(ev.Kind) {
	case bindwatchBwIncidentKindBW_INCIDENT_RELEASED:
		r := &events.Released{
			Header: events.Header{Type: events.TypeReleased, Version: events.Version, Time: at}, Source: events.SourceKernel,
			Proto: proto, Netns: ev.Netns, Addr: formatAddr(ev.Family, ev.Addr), Port: ev.Port,
			State: "LISTEN", How: events.HowClose, Closer: &actor,
		}
		if proto == "udp" {
			r.State = "UNCONN"
		} else {
			switch {
			case ev.Queued > 0 && ev.MayMigrate != 0:
				// Moved to another listener of the group, or reset: not known.
				r.ResetUnknown = events.ResetMigratable(uint64(ev.Queued))
			case ev.Queued > 0:
				r.ResetConnections = &events.ImpactCount{Count: uint64(ev.Queued), First: at, Last: at}
			default:
				r.ResetConnections = &events.ImpactCount{}
			}
		}
		if ev.Exiting != 0 {
			r.How = events.HowExit
			// task->exit_code as wait(2) reports it: a killing signal in
			// the low 7 bits, or the exit status above them.
			if sig := ev.ExitCode & 0x7f; sig != 0 {
				r.KilledBy = signalName(int(sig))
			} else {
				code := int(ev.ExitCode>>8) & 0xff
				r.ExitCode = &code
			}
		}
		if ev.HasHolder != 0 {
			h := &ev.Holder
			r.Holder = &events.Process{PID: int(h.Tgid), PPID: int(h.Ppid), UID: h.Uid, Comm: cString(h.Comm[:])}
			if h.StartNs != 0 {
				r.Holder.StartTime = clock(h.StartNs)
			}
			if h.BoundNs != 0 && ev.TsNs > h.BoundNs {
				r.HeldMS = int64(ev.TsNs-h.BoundNs) / int64(time.Millisecond)
			}
		}
		return r
	case bindwatchBwIncidentKindBW_INCIDENT_SIGNAL:
		return &events.Signal{
			Header: events.Header{Type: events.TypeSignal, Version: events.Version, Time: at}, Signal: signalName(int(ev.Sig)),
			Sender: actor, Target: events.Process{PID: int(ev.Target), Comm: cString(ev.TargetComm[:])},
			Result: signalResult(ev.Result), Proto: proto, Netns: ev.Netns, Port: ev.Port,
		}
	case bindwatchBwIncidentKindBW_INCIDENT_SHARED:
		h := &ev.Holder
		r := &events.PortShared{
			Header: events.Header{Type: events.TypePortShared, Version: events.Version, Time: at}, Source: events.SourceKernel,
			Syscall: syscallName(ev.Syscall), Proto: proto, Netns: ev.Netns,
			Addr: formatAddr(ev.Family, ev.Addr), Port: ev.Port, Joiner: actor, Repeats: ev.Repeats,
			Holder: events.Process{PID: int(h.Tgid), PPID: int(h.Ppid), UID: h.Uid, Comm: cString(h.Comm[:])},
		}
		if h.StartNs != 0 {
			r.Holder.StartTime = clock(h.StartNs)
		}
		return r
	default:
		if ev.Probe != 0 {
			return &events.PortFree{
				Header: events.Header{Type: events.TypePortFree, Version: events.Version, Time: at}, Source: events.SourceKernel,
				Syscall: syscallName(ev.Syscall), Proto: proto, Netns: ev.Netns,
				Addr: formatAddr(ev.Family, ev.Addr), Port: ev.Port, Process: actor,
			}
		}
		return &events.Recovered{
			Header: events.Header{Type: events.TypeRecovered, Version: events.Version, Time: at}, Source: events.SourceKernel,
			Syscall: syscallName(ev.Syscall), Proto: proto, Netns: ev.Netns,
			Addr: formatAddr(ev.Family, ev.Addr), Port: ev.Port, Process: actor,
		}
	}
}

func signalName(sig int) string {
	if name := unix.SignalName(syscall.Signal(sig)); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(sig)
}

// signalResult names the kernel's enum trace_signal_deliver result
// (include/trace/events/signal.h).
func signalResult(r int32) string {
	switch r {
	case 0:
		return "delivered"
	case 1:
		return "ignored"
	case 2:
		return "already_pending"
	case 3:
		return "overflow"
	case 4:
		return "lose_info"
	}
	return "result " + strconv.Itoa(int(r))
}
