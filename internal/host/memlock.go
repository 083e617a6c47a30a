package host

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// KernelRelease is the running kernel's release (uname -r); "" when it
// cannot be read.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ReleaseIsAtLeast says whether the kernel release (uname -r) is at
// least major.minor; an error when it does not start with them.
func ReleaseIsAtLeast(release string, major, minor int) (bool, error) {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return ma > major || ma == major && mi >= minor, nil
}

// ReleaseAtLeast says whether the running kernel's release is at least
// major.minor; false when it cannot be read.
func ReleaseAtLeast(major, minor int) bool {
	ok, err := ReleaseIsAtLeast(KernelRelease(), major, minor)
	return ok && err == nil
}

// RaiseMemlock lifts RLIMIT_MEMLOCK to unlimited on kernels that charge
// BPF maps and programs to it: those before 5.11 (64 KiB by default, not
// enough for the tracer's maps). From 5.11 the memory cgroup is charged
// instead and the limit is left alone, also for the commands `run` starts.
//
// The release is read, not probed: cilium/ebpf's rlimit package probes by
// creating a map under a zero limit in its package initialiser, which
// every command (who, free, --version) would pay for at start.
func RaiseMemlock() error {
	if ReleaseAtLeast(5, 11) {
		return nil
	}
	unlimited := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &unlimited, nil); err != nil {
		return fmt.Errorf("set RLIMIT_MEMLOCK to unlimited: %w", err)
	}
	return nil
}
