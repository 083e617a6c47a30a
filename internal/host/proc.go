package host

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/PID/stat's time fields. It is USER_HZ, part
// of the kernel ABI (100 on every architecture Linux runs on today), not the
// kernel's internal HZ, so it needs no sysconf() (which would need cgo).
const userHZ = 100

// pfKthread is PF_KTHREAD in /proc/PID/stat's flags (include/linux/sched.h).
const pfKthread = 0x00200000

// Stat is what bindwatch reads from /proc/PID/stat.
type Stat struct {
	Comm       string
	State      byte // R, S, D, Z (zombie: exited, not yet reaped), X, ...
	PPID       int
	Flags      uint64 // PF_* flags
	StartTicks uint64 // start time after boot, in USER_HZ ticks
}

// Started is when the process started, in wall time.
func (s Stat) Started() time.Time {
	return BootTime(0).Add(time.Duration(s.StartTicks) * (time.Second / userHZ))
}

// KernelThread reports whether PF_KTHREAD is set.
func (s Stat) KernelThread() bool { return s.Flags&pfKthread != 0 }

// Exited reports whether the process has exited and awaits its reaping.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(path)
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// ParseStat reads a /proc/PID/stat line. The comm field (2) is in
// parentheses and may itself hold spaces and ')' — any process can name
// itself so — so fields are counted from the last ')'.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("no comm field")
	}
	st := Stat{Comm: string(b[open+1 : closing])}
	// After ") ": field 3 (state) is rest[0], so field N is rest[N-3].
	rest := strings.Fields(string(b[closing+1:]))
	if len(rest) < 22-3+1 {
		return Stat{}, fmt.Errorf("%d fields, want at least 22", len(rest)+2)
	}
	var errs [3]error
	st.State = rest[0][0]
	st.PPID, errs[0] = strconv.Atoi(rest[4-3])
	st.Flags, errs[1] = strconv.ParseUint(rest[9-3], 10, 64)
	st.StartTicks, errs[2] = strconv.ParseUint(rest[22-3], 10, 64)
	for _, err := range errs {
		if err != nil {
			return Stat{}, err
		}
	}
	return st, nil
}

// SplitArgs turns a NUL-separated argv block — /proc/PID/cmdline, or the
// kernel's capture of it — into its arguments. A block cut at a capture
// limit keeps its truncated last argument; a process that rewrote its argv
// into one space-separated string (nginx: "nginx: master process ...")
// comes back as that one string.
func SplitArgs(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// maxThreadsRead bounds how many threads' status SignalDisposition reads:
// a process of any user may have many.
const maxThreadsRead = 4096

// SignalDisposition says whether process pid ignores sig (SigIgn in
// /proc/PID/status: it is never delivered) or blocks it in every thread
// (SigBlk of each /proc/PID/task/TID/status: it stays pending until one
// unblocks it). A process that does either will not exit on sig, however
// long one waits. Unknown (unreadable) counts as neither.
func SignalDisposition(pid int, sig int) (ignored, blocked bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	if mask, ok := statusMask(dir+"/status", "SigIgn:"); ok && mask&(1<<(sig-1)) != 0 {
		return true, false
	}
	tasks, err := os.ReadDir(dir + "/task")
	if err != nil || len(tasks) == 0 || len(tasks) > maxThreadsRead {
		return false, false
	}
	for _, t := range tasks {
		mask, ok := statusMask(dir+"/task/"+t.Name()+"/status", "SigBlk:")
		if !ok || mask&(1<<(sig-1)) == 0 {
			return false, false
		}
	}
	return false, true
}

// statusMask reads the hexadecimal signal mask on the line starting with
// field of a status file.
func statusMask(path, field string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return mask, err == nil
		}
	}
	return 0, false
}

// initPidNS is the inode of the host's (initial) pid namespace,
// PROC_PID_INIT_INO in the kernel: the same on every Linux since 3.8.
const initPidNS = 0xEFFFFFFC

// ProcPidNamespace says, when /proc shows the processes of a pid
// namespace other than the host's, why that matters; nil when it is the
// host's (or cannot be told: pid 1's namespace unreadable). The kernel —
// the BPF programs and iterators — names processes by their host pid; a
// /proc of a container's own pid namespace has other processes under
// those numbers, or none.
func ProcPidNamespace() error {
	link, err := os.Readlink("/proc/1/ns/pid")
	if err != nil || link == fmt.Sprintf("pid:[%d]", initPidNS) {
		return nil
	}
	return fmt.Errorf("/proc shows a pid namespace of its own (%s, not the host's pid:[%d]): the kernel names processes by their host pid, which this /proc does not show: holders are named only among the processes it shows (by their pids here, from their open files), and a pid the kernel reports (the failing process's) may be another process here (hint: run bindwatch in the host's pid namespace: docker run --pid=host, Kubernetes hostPID: true, a systemd service on the host)", link, initPidNS)
}
