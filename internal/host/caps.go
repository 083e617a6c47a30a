package host

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Capabilities bindwatch uses (linux/capability.h; CAP_BPF and
// CAP_PERFMON since Linux 5.8).
const (
	CapDACReadSearch = unix.CAP_DAC_READ_SEARCH
	CapKill          = unix.CAP_KILL
	CapNetAdmin      = unix.CAP_NET_ADMIN
	CapSysPtrace     = unix.CAP_SYS_PTRACE
	CapSysAdmin      = unix.CAP_SYS_ADMIN
	CapPerfmon       = 38
	CapBPF           = 39
)

// capNames name the capabilities above as the man pages, capsh and
// systemd do.
var capNames = map[int]string{
	CapDACReadSearch: "CAP_DAC_READ_SEARCH", CapKill: "CAP_KILL", CapNetAdmin: "CAP_NET_ADMIN",
	CapSysPtrace: "CAP_SYS_PTRACE", CapSysAdmin: "CAP_SYS_ADMIN", CapPerfmon: "CAP_PERFMON", CapBPF: "CAP_BPF",
}

// HasCap tells whether this process has capability c in its effective
// set. Root (uid 0) is not enough: a systemd unit's CapabilityBoundingSet
// or a container's --cap-drop leaves root with only some.
func HasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}

// MissingCaps names those of caps this process does not have, "" when
// it has them all: "CAP_KILL and CAP_DAC_READ_SEARCH".
func MissingCaps(caps ...int) string {
	var missing []string
	for _, c := range caps {
		if !HasCap(c) {
			missing = append(missing, capNames[c])
		}
	}
	switch len(missing) {
	case 0:
		return ""
	case 1:
		return missing[0]
	}
	return strings.Join(missing[:len(missing)-1], ", ") + " and " + missing[len(missing)-1]
}

// BPFCapable tells whether this process may load BPF programs (CAP_BPF,
// or CAP_SYS_ADMIN, which covers it), and PerfmonCapable whether it may
// attach them to tracepoints and probes (CAP_PERFMON, or CAP_SYS_ADMIN),
// as the kernel's bpf_capable() and perfmon_capable() decide.
func BPFCapable() bool { return HasCap(CapBPF) || HasCap(CapSysAdmin) }

// PerfmonCapable: see BPFCapable.
func PerfmonCapable() bool { return HasCap(CapPerfmon) || HasCap(CapSysAdmin) }
