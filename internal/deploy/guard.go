package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
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
		st, err := host.ReadStat(pid)
		if err != nil {
			break
		}
		pid = st.PPID
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

// isKernelThread reports whether pid is a kernel thread: PF_KTHREAD is set,
// or it is alive (not a zombie) yet has no executable.
func isKernelThread(pid int) bool {
	st, err := host.ReadStat(pid)
	if err != nil {
		return false // gone: nothing to protect
	}
	if st.KernelThread() {
		return true
	}
	_, err = os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return errors.Is(err, fs.ErrNotExist) && !st.Exited()
}
