package resolve

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// procRoot is where the process information pseudo-filesystem is mounted.
const procRoot = "/proc"

// startTimeTolerance is how far a captured start time may be from the one
// /proc gives for the same process: /proc counts in 10 ms ticks, and the two
// clocks are converted to wall time separately.
const startTimeTolerance = 50 * time.Millisecond

// FillProcess completes p from /proc/PID: exe, cmdline, comm, ppid, uid,
// gid, user, start time, cgroup and network namespace (the container, from
// the cgroup, is enrich.Namer.Process's, Options.Names). It only
// fills fields that are empty — and a truncated command line, with the
// whole one, when it is still the one the kernel captured — because what the kernel captured at the
// moment of the failure is authoritative and the process may have changed
// (exec'd) or exited since. A process that is gone leaves its fields empty,
// and so does one whose start time differs from a captured StartTime (its
// pid was reused): nothing is guessed.
func FillProcess(p *events.Process) {
	if p.PID <= 0 {
		return
	}
	dir := procRoot + "/" + strconv.Itoa(p.PID)
	stat, err := host.ReadStat(p.PID)
	if err != nil {
		return // gone (or not readable): nothing to add
	}
	started := stat.Started()
	// A start time captured by the kernel that does not match is another
	// process that reused the pid since: it must not lend its details.
	if !sameStart(p.StartTime, started) {
		return
	}
	if p.Comm == "" {
		p.Comm = stat.Comm
	}
	if p.PPID == 0 {
		p.PPID = stat.PPID
	}
	if p.StartTime.IsZero() {
		p.StartTime = started
	}
	// A command line the kernel captured tells whether the process still
	// runs the program it failed in: exec() keeps pid and start time but
	// not argv. If it does not, /proc's exe would name the new program.
	sameProgram := true
	if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
		full := host.SplitArgs(b)
		switch {
		case len(p.Cmdline) == 0:
			p.Cmdline = full
		case p.CmdlineTruncated && completes(full, p.Cmdline):
			p.Cmdline, p.CmdlineTruncated = full, false
		case p.CmdlineTruncated || !slices.Equal(full, p.Cmdline):
			sameProgram = false
		}
	}
	if p.Exe == "" && sameProgram {
		if exe, err := os.Readlink(dir + "/exe"); err == nil {
			p.Exe = exe
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
			if nspid := parseStatusNSPID(b); nspid != p.PID {
				p.NSPID = nspid
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
	if p.Netns == 0 {
		if ino, err := host.NetnsInode(dir + "/ns/net"); err == nil {
			p.Netns = ino
		}
	}
}

// completes tells whether full, a process's command line now, is the
// whole of captured, the head and tail the kernel captured at the failure
// (events.CmdlineGap between them). The same pid and start time are not
// enough: exec() keeps both and replaces argv, and a process may rewrite
// its argv (setproctitle). So full must begin with the captured head and
// end with the captured tail, with at least one argument between them
// (the gap always stands for one, cut or whole).
func completes(full, captured []string) bool {
	for i, a := range captured {
		if a != events.CmdlineGap {
			continue
		}
		head, tail := captured[:i], captured[i+1:]
		if len(full) > len(head)+len(tail) && slices.Equal(full[:len(head)], head) && slices.Equal(full[len(full)-len(tail):], tail) {
			return true
		}
	}
	return false
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
	stat, err := host.ReadStat(p.PID)
	if err != nil || stat.State == 'Z' {
		return false
	}
	return sameStart(p.StartTime, stat.Started())
}

// sameStart tells whether two start times of one pid can be the same
// process; a zero time (not known) matches any.
func sameStart(a, b time.Time) bool {
	return a.IsZero() || b.IsZero() || a.Sub(b).Abs() <= startTimeTolerance
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

// parseStatusNSPID returns the pid in the process's innermost pid
// namespace: the last field of /proc/PID/status's NSpid line (4.1+), or 0.
func parseStatusNSPID(b []byte) int {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("NSpid:")); ok {
			f := strings.Fields(string(rest))
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[len(f)-1])
				return n
			}
		}
	}
	return 0
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

// passwd caches /etc/passwd's uid→name map, reloaded when the file changes.
var passwd struct {
	sync.Mutex
	modTime time.Time
	size    int64
	names   map[uint32]string
}

// passwdPath is a variable only so that tests can use a fixture file.
var passwdPath = "/etc/passwd"

// UserName returns the name of uid from /etc/passwd, or "" (userName).
func UserName(uid uint32) string { return userName(uid) }

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
