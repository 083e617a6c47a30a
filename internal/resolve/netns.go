package resolve

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// netnsIdleTimeout is how long an open namespace stays cached unused. The
// cache holds a reference that keeps the namespace alive, so a container's
// namespace must not be pinned long after the container is gone.
const netnsIdleTimeout = time.Minute

// netnsHandle is an open network namespace with the netlink sockets
// bindwatch created inside it. A netlink socket stays bound to the
// namespace it was created in, so queries need no setns() once it exists.
type netnsHandle struct {
	host.Netns
	file     *os.File
	diagFD   int // NETLINK_SOCK_DIAG
	mu       sync.Mutex
	refs     int // guarded by netnsCache.mu
	lastUsed time.Time
}

func (h *netnsHandle) close() {
	if h.diagFD >= 0 {
		unix.Close(h.diagFD)
	}
	h.file.Close()
}

// netnsCache maps network namespace inodes to open handles.
type netnsCache struct {
	mu      sync.Mutex
	handles map[uint32]*netnsHandle
	own     uint32 // bindwatch's own namespace
}

func newNetnsCache() (*netnsCache, error) {
	own, err := host.NetnsInode("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read own network namespace: %w (is /proc mounted?)", err)
	}
	return &netnsCache{handles: make(map[uint32]*netnsHandle), own: own}, nil
}

// acquire returns an open handle for the namespace with the given inode,
// opening it through path or pid's /proc entry when they lead to it, or
// else through any process or `ip netns` mount that does. inode 0 means
// pid's namespace (or bindwatch's own when pid is 0 too). Release it with
// release.
func (c *netnsCache) acquire(path string, pid int, inode uint32) (*netnsHandle, error) {
	if inode == 0 && pid <= 0 {
		inode = c.own
	}
	c.mu.Lock()
	if h := c.handles[inode]; inode != 0 && h != nil {
		h.refs++
		h.lastUsed = time.Now()
		c.mu.Unlock()
		return h, nil
	}
	c.mu.Unlock()

	if inode == c.own && pid <= 0 {
		pid = os.Getpid() // no need to search for our own namespace
	}
	ns, f, err := openNetns(path, pid, inode)
	if err != nil {
		return nil, err
	}
	h := &netnsHandle{Netns: ns, file: f, diagFD: -1}
	if err := inNetns(h, c.own, func() error {
		fd, err := openSockDiag()
		h.diagFD = fd
		return err
	}); err != nil {
		h.close()
		return nil, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if existing := c.handles[ns.Inode]; existing != nil { // lost a race
		h.close()
		h = existing
	} else {
		c.handles[ns.Inode] = h
	}
	h.refs++
	h.lastUsed = time.Now()
	c.evictIdleLocked()
	return h, nil
}

func (c *netnsCache) release(h *netnsHandle) {
	c.mu.Lock()
	h.refs--
	c.mu.Unlock()
}

func (c *netnsCache) evictIdleLocked() {
	for inode, h := range c.handles {
		if h.refs == 0 && time.Since(h.lastUsed) > netnsIdleTimeout {
			h.close()
			delete(c.handles, inode)
		}
	}
}

func (c *netnsCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for inode, h := range c.handles {
		h.close()
		delete(c.handles, inode)
	}
}

// openNetns opens the namespace: through path or pid if they lead to it,
// else by searching every process and every `ip netns` mount for it.
func openNetns(path string, pid int, inode uint32) (host.Netns, *os.File, error) {
	if path != "" && inode != 0 {
		if f, ino, err := host.OpenNetnsFile(path); err == nil && ino == inode {
			return host.Netns{Inode: ino, Path: path}, f, nil
		} else if err == nil {
			f.Close()
		}
	}
	if pid > 0 {
		path := "/proc/" + strconv.Itoa(pid) + "/ns/net"
		f, ino, err := host.OpenNetnsFile(path)
		if err == nil && (inode == 0 || ino == inode) {
			return host.Netns{Inode: ino, Path: path}, f, nil
		}
		if err == nil {
			f.Close()
		}
		if inode == 0 {
			return host.Netns{}, nil, fmt.Errorf("open network namespace of pid %d: %w (the process may have exited)", pid, err)
		}
	}
	if inode == 0 {
		return host.Netns{}, nil, errors.New("open network namespace: neither a pid nor a namespace inode was given")
	}
	for _, ns := range host.ListNetns() {
		if ns.Inode != inode {
			continue
		}
		if f, ino, err := host.OpenNetnsFile(ns.Path); err == nil && ino == inode {
			return ns, f, nil
		} else if err == nil {
			f.Close()
		}
	}
	return host.Netns{}, nil, fmt.Errorf("network namespace %d not found: no process and no /run/netns mount is in it any more (it was destroyed, or bindwatch runs in a different pid namespace)", inode)
}

// inNetns runs fn inside h's network namespace (host.InNetns), or
// directly when that is own, the caller's.
func inNetns(h *netnsHandle, own uint32, fn func() error) error {
	if h.Inode == own {
		return fn()
	}
	return host.InNetns(h.file, fn)
}
