package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"

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

// NetnsInode returns the inode of the namespace a /proc/PID/ns/net link or
// an `ip netns` bind mount refers to.
func NetnsInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

// ErrNotNamespace is the error of OpenNetnsFile for a path that is not a
// namespace file.
var ErrNotNamespace = errors.New("not a namespace file")

// procNsLink matches /proc's own links to a process's (or thread's)
// network namespace, which OpenNetnsFile follows: the kernel makes them.
var procNsLink = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^/proc/(self|thread-self|[0-9]+)(/task/[0-9]+)?/ns/net$`)
})

// OpenNetnsFile opens a namespace file and returns it with the inode of
// the namespace it holds. The open file keeps the namespace alive. A path
// may come from a user (--netns PATH) and lead into a shared directory, so
// it is opened without waiting for a FIFO's writer (O_NONBLOCK) and without
// following a symlink (O_NOFOLLOW) — but for /proc/PID/ns/net, the
// kernel's own link — and anything but a file of the nsfs filesystem is
// refused (ErrNotNamespace).
func OpenNetnsFile(path string) (*os.File, uint32, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	if !procNsLink().MatchString(filepath.Clean(path)) {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, 0, fmt.Errorf("%s: %w: a symbolic link (bindwatch follows only /proc/PID/ns/net)", path, ErrNotNamespace)
	}
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		f.Close()
		return nil, 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if fs.Type != unix.NSFS_MAGIC {
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w: %s", path, ErrNotNamespace, fileType(st.Mode))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return f, uint32(st.Ino), nil
}

// fileType names what a file is, for errors.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFREG:
		return "a regular file"
	}
	return "not a namespace's file"
}

// Open opens ns through its path, and checks the path still leads to it:
// a /proc/PID/ns/net whose process exited may now be another process's.
func (ns Netns) Open() (*os.File, error) {
	f, ino, err := OpenNetnsFile(ns.Path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %d: %w (its last process may have exited)", ns.Inode, err)
	}
	if ino != ns.Inode {
		f.Close()
		return nil, fmt.Errorf("open network namespace %d: %s is another namespace now (its process exited)", ns.Inode, ns.Path)
	}
	return f, nil
}

// ListNetns returns every network namespace that a process is in or that
// is bind-mounted under /run/netns, each once, bindwatch's own first.
func ListNetns() []Netns {
	seen := make(map[uint32]bool)
	var out []Netns
	add := func(path string) {
		ino, err := NetnsInode(path)
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

// InNetns runs fn on an OS thread that has entered the network namespace
// ns (an open namespace file), for what binds to the caller's namespace at
// creation: sockets, netlink sockets, BPF iterators over sockets,
// /proc/sys/net files. With ns nil the thread stays in the caller's
// namespace, for fn to unshare one of its own. The thread is locked for
// fn's whole run and returned to its namespace afterwards, also when fn
// ends its goroutine (runtime.Goexit, as a test's t.FailNow does; the
// error then says fn did not return). If it cannot return, the goroutine
// exits still locked and Go discards the thread (or parks it, the main
// thread) instead of running other goroutines in the wrong namespace: no
// other goroutine ever runs in the namespace.
func InNetns(ns *os.File, fn func() error) error {
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
		where := "the network namespace it unshared"
		if ns != nil {
			where = "network namespace " + ns.Name()
		}
		fnErr := fmt.Errorf("the function run in %s did not return (it ended its goroutine)", where)
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				errc <- errors.Join(fnErr, fmt.Errorf("return from %s: %w", where, err))
				return // still locked: Go discards the thread
			}
			runtime.UnlockOSThread()
			errc <- fnErr
		}()
		if ns != nil {
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				fnErr = fmt.Errorf("enter network namespace %s: %w (hint: bindwatch needs CAP_SYS_ADMIN there: run it as root)", ns.Name(), err)
				return
			}
		}
		fnErr = fn()
	}()
	return <-errc
}
