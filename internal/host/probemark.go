package host

import "golang.org/x/sys/unix"

// ProbeMark is the SO_MARK of bindwatch's own test binds (wait-free's and
// free's checks, the resolver's kernel probes): a running tracer does not
// report their failures. It must equal BW_PROBE_MARK in bpf/bindwatch.h
// (internal/tracer's tests check it). Only a process with CAP_NET_ADMIN or
// CAP_NET_RAW can set it, and the tracer honours it only in network
// namespaces of the initial user namespace (is_probe in
// bpf/bindwatch/common.h), so no unprivileged user can hide a failure with it.
const ProbeMark = 0x62776174 // "bwat"

// MarkProbe marks fd as one of bindwatch's own test binds. Without
// CAP_NET_ADMIN the mark is refused and the bind is reported like any
// other: that is the point of the capability check, so the error is not
// one to act on.
func MarkProbe(fd int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, ProbeMark)
}
