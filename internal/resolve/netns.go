package resolve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Netns names one network namespace: its inode (what `ls -L -i
// /proc/PID/ns/net` and the tracer report) and where bindwatch found it.
type Netns struct {
	Inode uint32
	// Path is the file that opens it: /proc/PID/ns/net or a bind mount
	// such as /run/netns/NAME (`ip netns add`), which may have no process.
	Path string
}

// netnsIdleTimeout is how long an open namespace stays cached unused. The
// cache holds a reference that keeps the namespace alive, so a container's
// namespace must not be pinned long after the container is gone.
const netnsIdleTimeout = time.Minute

// netnsHandle is an open network namespace with the netlink sockets
// bindwatch created inside it. A netlink socket stays bound to the
// namespace it was created in, so queries need no setns() once it exists.
type netnsHandle struct {
	Netns
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
	own, err := netnsInodeOfPath("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read own network namespace: %w (is /proc mounted?)", err)
	}
	return &netnsCache{handles: make(map[uint32]*netnsHandle), own: own}, nil
}

// netnsInodeOfPath returns the inode of the namespace a /proc/PID/ns/net
// link or an `ip netns` bind mount refers to.
func netnsInodeOfPath(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
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
func openNetns(path string, pid int, inode uint32) (Netns, *os.File, error) {
	if path != "" && inode != 0 {
		if f, ino, err := openNetnsFile(path); err == nil && ino == inode {
			return Netns{Inode: ino, Path: path}, f, nil
		} else if err == nil {
			f.Close()
		}
	}
	if pid > 0 {
		path := "/proc/" + strconv.Itoa(pid) + "/ns/net"
		f, ino, err := openNetnsFile(path)
		if err == nil && (inode == 0 || ino == inode) {
			return Netns{Inode: ino, Path: path}, f, nil
		}
		if err == nil {
			f.Close()
		}
		if inode == 0 {
			return Netns{}, nil, fmt.Errorf("open network namespace of pid %d: %w (the process may have exited)", pid, err)
		}
	}
	if inode == 0 {
		return Netns{}, nil, errors.New("open network namespace: neither a pid nor a namespace inode was given")
	}
	for _, ns := range listNetns() {
		if ns.Inode != inode {
			continue
		}
		if f, ino, err := openNetnsFile(ns.Path); err == nil && ino == inode {
			return ns, f, nil
		} else if err == nil {
			f.Close()
		}
	}
	return Netns{}, nil, fmt.Errorf("network namespace %d not found: no process and no /run/netns mount is in it any more (it was destroyed, or bindwatch runs in a different pid namespace)", inode)
}

func openNetnsFile(path string) (*os.File, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, 0, err
	}
	if st.Dev == 0 && st.Ino == 0 {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a namespace", path)
	}
	return f, uint32(st.Ino), nil
}

// listNetns returns every network namespace that a process is in or that
// is bind-mounted under /run/netns, each once.
func listNetns() []Netns {
	seen := make(map[uint32]bool)
	var out []Netns
	add := func(path string) {
		ino, err := netnsInodeOfPath(path)
		if err != nil || seen[ino] {
			return
		}
		seen[ino] = true
		out = append(out, Netns{Inode: ino, Path: path})
	}
	add("/proc/self/ns/net")
	if mounts, err := filepath.Glob("/run/netns/*"); err == nil {
		for _, m := range mounts {
			add(m)
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			add("/proc/" + e.Name() + "/ns/net")
		}
	}
	return out
}

// inNetns runs fn on an OS thread that has entered h's network namespace,
// for what binds to the caller's namespace at creation: netlink sockets,
// BPF iterators over sockets, /proc/sys/net files. own is the caller's
// namespace inode: there fn runs directly.
func inNetns(h *netnsHandle, own uint32, fn func() error) error {
	if h.Inode == own {
		return fn()
	}
	// A fresh goroutine locked to its thread: if the thread cannot return
	// to its namespace, the goroutine exits still locked and Go discards
	// the thread instead of running other goroutines in the wrong netns.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(h.file.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %d (%s): %w (bindwatch needs CAP_SYS_ADMIN: run it as root)", h.Inode, h.Path, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("return from network namespace %d: %w", h.Inode, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
