package resolve

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
)

// procRoot is where the process information pseudo-filesystem is mounted.
const procRoot = "/proc"

// userHZ is the unit of /proc/PID/stat's time fields. It is USER_HZ, part
// of the kernel ABI (100 on every architecture Linux runs on today), not the
// kernel's internal HZ, so it needs no sysconf() (which would need cgo).
const userHZ = 100

// startTimeTolerance is how far a captured start time may be from the one
// /proc gives for the same process: /proc counts in 10 ms ticks, and the two
// clocks are converted to wall time separately.
const startTimeTolerance = 50 * time.Millisecond

// FillProcess completes p from /proc/PID: exe, cmdline, comm, ppid, uid,
// gid, user, start time, cgroup, container id and network namespace. It only
// fills fields that are empty, because what the kernel captured at the
// moment of the failure is authoritative and the process may have changed
// (exec'd) or exited since. A process that is gone leaves its fields empty,
// and so does one whose start time differs from a captured StartTime (its
// pid was reused): nothing is guessed.
func FillProcess(p *events.Process) {
	if p.PID <= 0 {
		return
	}
	dir := procRoot + "/" + strconv.Itoa(p.PID)
	stat, statOK := procStat{}, false
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		stat, statOK = parseStat(b)
	}
	if !statOK {
		return // gone (or not readable): nothing to add
	}
	started := stat.started()
	// A start time captured by the kernel that does not match is another
	// process that reused the pid since: it must not lend its details.
	if !sameStart(p.StartTime, started) {
		return
	}
	if p.Comm == "" {
		p.Comm = stat.comm
	}
	if p.PPID == 0 {
		p.PPID = stat.ppid
	}
	if p.StartTime.IsZero() {
		p.StartTime = started
	}
	if p.Exe == "" {
		if exe, err := os.Readlink(dir + "/exe"); err == nil {
			p.Exe = exe
		}
	}
	if len(p.Cmdline) == 0 {
		if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
			p.Cmdline = splitCmdline(b)
		}
	}
	// UID 0 is both root and "not captured"; a GID means the ids were
	// captured together, by the kernel or here.
	if p.GID == nil {
		if b, err := os.ReadFile(dir + "/status"); err == nil {
			if uid, gid, ok := parseStatusIDs(b); ok {
				if p.UID == 0 {
					p.UID = uid
				}
				p.GID = &gid
			}
		}
	}
	if p.User == "" && (p.GID != nil || p.UID != 0) {
		p.User = userName(p.UID)
	}
	if p.Cgroup == "" {
		if b, err := os.ReadFile(dir + "/cgroup"); err == nil {
			p.Cgroup = cgroupV2Path(b)
		}
	}
	if p.ContainerID == "" {
		p.ContainerID = ContainerID(p.Cgroup)
	}
	if p.Netns == 0 {
		if ino, err := netnsInodeOfPath(dir + "/ns/net"); err == nil {
			p.Netns = ino
		}
	}
}

// describe is how the resolver produces every process it reports: the
// details from /proc (FillProcess), then its secrets removed — whether or
// not the process could still be found.
func (r *Resolver) describe(p *events.Process) {
	FillProcess(p)
	if r.names != nil {
		r.names(p)
	}
	r.redact.Process(p)
}

// running tells whether p (pid and start time) is still alive: its pid
// exists and, where p has a start time, belongs to the same process.
func running(p events.Process) bool {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(p.PID) + "/stat")
	if err != nil {
		return false
	}
	stat, ok := parseStat(b)
	if !ok || stat.state == 'Z' {
		return false
	}
	return sameStart(p.StartTime, stat.started())
}

// sameStart tells whether two start times of one pid can be the same
// process; a zero time (not known) matches any.
func sameStart(a, b time.Time) bool {
	return a.IsZero() || b.IsZero() || a.Sub(b).Abs() <= startTimeTolerance
}

// splitCmdline turns /proc/PID/cmdline (NUL-separated, NUL-terminated) into
// arguments. A process that rewrote its argv into one space-separated string
// (nginx: "nginx: master process ...") comes back as that one string.
func splitCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

type procStat struct {
	comm       string
	state      byte // R, S, D, Z (zombie: exited, not yet reaped), ...
	ppid       int
	startTicks uint64
}

// started is when the process started, from its start time in ticks.
func (s procStat) started() time.Time {
	return bootTime().Add(time.Duration(s.startTicks) * (time.Second / userHZ))
}

// parseStat reads /proc/PID/stat. The comm field (2) is in parentheses and
// may itself contain spaces and ')', so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, bool) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStat{}, false
	}
	st := procStat{comm: string(b[open+1 : closing])}
	// After ") ": field 3 (state) is rest[0], so field N is rest[N-3].
	rest := strings.Fields(string(b[closing+1:]))
	if len(rest) < 22-3+1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(rest[4-3])
	start, err2 := strconv.ParseUint(rest[22-3], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	st.state = rest[0][0]
	st.ppid = ppid
	st.startTicks = start
	return st, true
}

// parseStatusIDs returns the real uid and gid from /proc/PID/status — the
// ids bpf_get_current_uid_gid() reports for the failing process, so a
// holder and a failing process are compared in the same terms.
func parseStatusIDs(b []byte) (uid, gid uint32, ok bool) {
	var haveUID, haveGID bool
	for line := range bytes.Lines(b) {
		switch {
		case bytes.HasPrefix(line, []byte("Uid:")):
			f := strings.Fields(string(line[4:]))
			if len(f) > 0 {
				if v, err := strconv.ParseUint(f[0], 10, 32); err == nil {
					uid, haveUID = uint32(v), true
				}
			}
		case bytes.HasPrefix(line, []byte("Gid:")):
			f := strings.Fields(string(line[4:]))
			if len(f) > 0 {
				if v, err := strconv.ParseUint(f[0], 10, 32); err == nil {
					gid, haveGID = uint32(v), true
				}
			}
		}
	}
	return uid, gid, haveUID && haveGID
}

// cgroupV2Path returns the unified-hierarchy path ("0::/path") from
// /proc/PID/cgroup, or "" on a cgroup-v1-only host.
func cgroupV2Path(b []byte) string {
	for line := range bytes.Lines(b) {
		line = bytes.TrimRight(line, "\n")
		if rest, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			return string(rest)
		}
	}
	return ""
}

// containerIDPattern is a 64-hex-digit container id as runtimes put it in
// cgroup paths: docker-<id>.scope, cri-containerd-<id>.scope,
// crio-<id>.scope, libpod-<id>.scope, /docker/<id>, /kubepods/.../<id>.
var containerIDPattern = regexp.MustCompile(`(?:^|[^0-9a-f])([0-9a-f]{64})(?:[^0-9a-f]|$)`)

// ContainerID extracts the container id from a cgroup path, or "" when the
// path has none. With nested ids the innermost (last) one wins: that is the
// container the process runs in.
func ContainerID(cgroupPath string) string {
	m := containerIDPattern.FindAllStringSubmatch(cgroupPath, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

var (
	bootTimeOnce  sync.Once
	bootTimeValue time.Time
)

// bootTime is the wall-clock time of boot as /proc/PID/stat's start time
// counts it: CLOCK_BOOTTIME, which keeps running across suspend.
// /proc/stat's btime is rounded to the second; this is not.
func bootTime() time.Time {
	bootTimeOnce.Do(func() {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
			return
		}
		bootTimeValue = time.Now().Add(-time.Duration(ts.Nano()))
	})
	return bootTimeValue
}

// passwd caches /etc/passwd's uid→name map, reloaded when the file changes.
var passwd struct {
	sync.Mutex
	modTime time.Time
	size    int64
	names   map[uint32]string
}

// passwdPath is a variable only so that tests can use a fixture file.
var passwdPath = "/etc/passwd"

// userName returns the name of uid from /etc/passwd, parsed directly (no
// cgo, no NSS: users only known to LDAP/sssd stay unnamed), or "".
func userName(uid uint32) string {
	passwd.Lock()
	defer passwd.Unlock()
	fi, err := os.Stat(passwdPath)
	if err != nil {
		return ""
	}
	if passwd.names == nil || !fi.ModTime().Equal(passwd.modTime) || fi.Size() != passwd.size {
		names, err := readPasswd(passwdPath)
		if err != nil {
			return ""
		}
		passwd.names, passwd.modTime, passwd.size = names, fi.ModTime(), fi.Size()
	}
	return passwd.names[uid]
}

func readPasswd(path string) (map[uint32]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := make(map[uint32]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:uid:gid:gecos:home:shell
		fields := strings.SplitN(sc.Text(), ":", 4)
		if len(fields) < 4 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		uid, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue
		}
		if _, seen := names[uint32(uid)]; !seen { // first entry wins, as getpwuid
			names[uint32(uid)] = fields[0]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return names, nil
}
