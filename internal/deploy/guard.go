package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// guard decides which holder processes bindwatch must never signal.
type guard struct {
	self      int
	parent    int
	ancestors map[int]bool // every ancestor of bindwatch, parent included
	ownNetns  uint32
	allNetns  bool
}

// newGuard protects bindwatch, its ancestors (whose death would end the
// script running it), and — unless allNetns — every process outside
// bindwatch's network namespace ownNetns.
func newGuard(ownNetns uint32, allNetns bool) guard {
	g := guard{self: os.Getpid(), parent: os.Getppid(), ancestors: map[int]bool{}, ownNetns: ownNetns, allNetns: allNetns}
	for pid := g.parent; pid > 1 && !g.ancestors[pid]; {
		g.ancestors[pid] = true
		st, err := readStat(pid)
		if err != nil {
			break
		}
		pid = st.ppid
	}
	return g
}

// refusal says why p must not be signalled, or "" when it may be.
func (g guard) refusal(p *events.Process) string {
	switch {
	case p.PID <= 0:
		return "it has no process id"
	case p.PID == 1:
		return "it is pid 1, the init of this host or container: stopping it takes everything down with it"
	case p.PID == g.self:
		return "it is bindwatch itself"
	case p.PID == g.parent:
		return "it is bindwatch's parent (the shell or script running bindwatch)"
	case g.ancestors[p.PID]:
		return "it is an ancestor of bindwatch (the script or service running bindwatch)"
	case isKernelThread(p.PID):
		return "it is a kernel thread: signals do not stop it; stop the kernel service that owns the port (e.g. nfs-server, rpcbind) with its own tools"
	case !g.allNetns && p.Netns != 0 && p.Netns != g.ownNetns:
		return fmt.Sprintf("it runs in another network namespace (%d: a container or an ip netns) — pass --all-netns to stop processes there too", p.Netns)
	}
	return ""
}

// pfKthread is PF_KTHREAD in /proc/PID/stat's flags (include/linux/sched.h).
const pfKthread = 0x00200000

// isKernelThread reports whether pid is a kernel thread: PF_KTHREAD is set,
// or it is alive (not a zombie) yet has no executable.
func isKernelThread(pid int) bool {
	st, err := readStat(pid)
	if err != nil {
		return false // gone: nothing to protect
	}
	if st.flags&pfKthread != 0 {
		return true
	}
	_, err = os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return errors.Is(err, fs.ErrNotExist) && st.state != "Z" && st.state != "X"
}

type procStat struct {
	state string
	ppid  int
	flags uint64
}

// readStat reads /proc/PID/stat; the comm field may hold spaces and ')',
// so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no comm field", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 9-3+1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var st procStat
	st.state = f[0]
	st.ppid, err = strconv.Atoi(f[4-3])
	if err == nil {
		st.flags, err = strconv.ParseUint(f[9-3], 10, 64)
	}
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}
