package host

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TracefsPath is where tracefs is mounted on modern systems; cilium/ebpf
// reads tracepoint IDs from there (or from the debugfs mount below).
const TracefsPath = "/sys/kernel/tracing"

// tracefsPaths are where tracefs is looked for, in order.
var tracefsPaths = []string{TracefsPath, "/sys/kernel/debug/tracing"}

// Tracefs returns where tracefs is mounted, "" when it is not.
func Tracefs() string {
	for _, p := range tracefsPaths {
		if isTracefs(p) {
			return p
		}
	}
	return ""
}

// EnsureTracefs mounts tracefs when neither of its usual places has it:
// syscall tracepoints are attached by the ID the kernel publishes there.
// Many minimal hosts and containers boot without it mounted.
func EnsureTracefs() error {
	if Tracefs() != "" {
		return nil
	}
	for _, p := range tracefsPaths {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.TRACEFS_MAGIC {
			if _, err := os.Stat(p + "/events"); errors.Is(err, os.ErrPermission) {
				return fmt.Errorf("tracefs at %s may be read by root only: as a user other than root, the tracepoint backend needs CAP_DAC_READ_SEARCH (hint: run it with sudo)", p)
			}
		}
	}
	err := unix.Mount("tracefs", TracefsPath, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("mount tracefs on %s: the directory does not exist (hint: is sysfs mounted at /sys? mount -t sysfs sysfs /sys)", TracefsPath)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("mount tracefs on %s: %w (hint: run as root with CAP_SYS_ADMIN, or mount it first: mount -t tracefs tracefs %s)", TracefsPath, err, TracefsPath)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("mount tracefs on %s: this kernel has no tracefs (CONFIG_TRACING off): the tracepoint backend cannot work here", TracefsPath)
	}
	return fmt.Errorf("mount tracefs on %s: %w (hint: mount -t tracefs tracefs %s)", TracefsPath, err, TracefsPath)
}

func isTracefs(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	if st.Type != unix.TRACEFS_MAGIC {
		return false
	}
	_, err := os.Stat(path + "/events")
	return err == nil
}
