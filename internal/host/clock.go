package host

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// bootEpoch is the wall-clock time of CLOCK_BOOTTIME zero, computed once
// per process, so every conversion of one kernel timestamp (a process's
// start, say) gives the same time. /proc/stat's btime is rounded to the
// second; this is not.
var bootEpoch = sync.OnceValue(func() time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano()))
})

// BootTime converts a CLOCK_BOOTTIME timestamp in nanoseconds — the clock
// of bpf_ktime_get_boot_ns() and of /proc/PID/stat's start times, which
// keeps running across suspend — to wall time.
func BootTime(bootNS uint64) time.Time {
	return bootEpoch().Add(time.Duration(bootNS))
}
