package tracer

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// tracefsPath is where tracefs is mounted on modern systems; cilium/ebpf
// reads tracepoint IDs from there (or from the debugfs mount below).
const tracefsPath = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs when neither of its usual places has it:
// syscall tracepoints are attached by the ID the kernel publishes there.
// Many minimal hosts and containers boot without it mounted.
func ensureTracefs() error {
	for _, p := range []string{tracefsPath, "/sys/kernel/debug/tracing"} {
		if isTracefs(p) {
			return nil
		}
	}
	err := unix.Mount("tracefs", tracefsPath, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("mount tracefs on %s: the directory does not exist (hint: is sysfs mounted at /sys? mount -t sysfs sysfs /sys)", tracefsPath)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("mount tracefs on %s: %w (hint: run as root with CAP_SYS_ADMIN, or mount it first: mount -t tracefs tracefs %s)", tracefsPath, err, tracefsPath)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("mount tracefs on %s: this kernel has no tracefs (CONFIG_TRACING off): the tracepoint backend cannot work here", tracefsPath)
	}
	return fmt.Errorf("mount tracefs on %s: %w (hint: mount -t tracefs tracefs %s)", tracefsPath, err, tracefsPath)
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
