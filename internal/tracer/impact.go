package tracer

import (
	"errors"
	"fmt"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// impactProgram counts, in the kernel, the SYNs and datagrams dropped for
// no socket at a port with an open incident (bpf/bindwatch/impact.h,
// "client impact"). It reads skb:kfree_skb's drop reason, which the
// tracepoint carries from 5.17 on; on older kernels it is not loaded and
// refused connections are not measured.
const impactProgram = "incident_noskb_drop"

// impactSource says which kernel hook counts refused connections and
// dropped datagrams on this kernel ("" when none can): doctor tells it.
func impactSource() string {
	ks, err := kernelSpec()
	if err != nil {
		return ""
	}
	var td *btf.Typedef
	if err := ks.TypeByName("btf_trace_kfree_skb", &td); err != nil {
		return ""
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return ""
	}
	fp, ok := ptr.Target.(*btf.FuncProto)
	// (void *ctx, skb, location, reason[, rx_sk])
	if !ok || len(fp.Params) < 4 {
		return ""
	}
	return "tp_btf/kfree_skb (drop reason NO_SOCKET)"
}

// ClientImpact says, for doctor, whether this kernel counts the
// connections refused and datagrams dropped at a port with an open
// incident, and by which hook.
func ClientImpact() string {
	if s := impactSource(); s != "" {
		return "measured by " + s + ": refused connections (TCP) and dropped datagrams (UDP) while a port has an open incident"
	}
	return "not measured on this kernel: skb:kfree_skb has no drop reason before Linux 5.17 (recovered and incident records carry no refused_connections or dropped_datagrams)"
}

// ImpactSource says which kernel hook counts a port's refused connections
// and dropped datagrams during an incident, or "" when this kernel cannot
// (kfree_skb without a drop reason, before 5.17).
func (t *Tracer) ImpactSource() string { return t.impactSource }

// ErrImpactNotMeasured: this kernel cannot count a port's refused
// connections or dropped datagrams (see ImpactSource).
var ErrImpactNotMeasured = errors.New("client impact not measured on this kernel (hint: needs skb:kfree_skb with its drop reason, Linux 5.17+)")

// Impact returns the refused connections (tcp) or dropped datagrams (udp)
// counted at the port since it was watched (WatchPort); a zero count when
// none were. ErrImpactNotMeasured when the kernel cannot count them.
func (t *Tracer) Impact(k PortKey) (events.ImpactCount, error) {
	if t.impactSource == "" {
		return events.ImpactCount{}, ErrImpactNotMeasured
	}
	hk, ok := k.kernel()
	if !ok {
		return events.ImpactCount{}, fmt.Errorf("impact of port %d/%s: not a TCP or UDP port", k.Port, k.Proto)
	}
	var c bindwatchImpactCount
	if err := t.maps.IncidentImpact.Lookup(hk, &c); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return events.ImpactCount{}, nil
		}
		return events.ImpactCount{}, fmt.Errorf("impact of port %d/%s: %w", k.Port, k.Proto, err)
	}
	return events.ImpactCount{Count: c.Count, First: t.Time(c.FirstNs), Last: t.Time(c.LastNs)}, nil
}
