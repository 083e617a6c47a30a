package iterload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// A running tracer shares a loaded copy of the iterators with the one-shot
// commands (who, free, wait-free): loading them costs a one-shot `who`
// ~15 ms of its ~40 on a host with 50,000 open fds, opening pinned ones
// well under a millisecond. The tracer (Share) pins them under
//
//	/sys/fs/bpf/bindwatch/iters-<hash of the embedded object>/
//	    owners, timewait            the iterator links
//	    wanted_inodes, …            their input maps
//	    run/                        flock(2)ed by each run (Begin)
//
// where the directories are root's, mode 0700, on a bpffs: nobody else can
// put anything there. A command (OpenShared) opens them only through
// directories it has checked so, and uses them only when the links'
// programs are the iterators and use exactly the pinned maps, of the
// shapes this build's object gives them. The hash in the name keeps a
// different build's iterators apart. The tracer's own lookups use a
// private copy: a stopped command holding the run lock never delays them.
//
// The tracer holds an flock on its iters directory while it lives. A new
// tracer removes a directory nobody holds (left by one that was killed),
// and does not share when another tracer already does. The pins of a
// tracer killed with SIGKILL stay until the next tracer or reboot: they
// are still this build's iterators, loaded for this kernel, and commands
// use them.

// bpffs is where tracers share their iterators, in bpffs/bindwatch: the
// bpffs systemd mounts. Tests point it at a bpffs of their own.
var bpffs = "/sys/fs/bpf"

// SharedRoot is the directory of the shared iterators.
func SharedRoot() string { return bpffs + "/bindwatch" }

// sharedName is this build's directory under SharedRoot.
var sharedName = sync.OnceValue(func() string {
	sum := sha256.Sum256(_ItersBytes)
	return "iters-" + hex.EncodeToString(sum[:8])
})

// The names pinned in a shared directory, besides the maps (by their
// names in bpf/iters.bpf.c).
const (
	pinOwners   = "owners"
	pinTimewait = "timewait"
	runLockDir  = "run"
)

// mapShape is what a pinned map must be for this build's programs;
// TestSharedMapShapes checks the table against the embedded object.
type mapShape struct {
	typ                  ebpf.MapType
	key, value, capacity uint32
	optional             bool // only the socket_owners variant uses it
}

var sharedMaps = map[string]mapShape{
	itersMapWantedInodes: {ebpf.Hash, 8, 1, 4096, false},
	itersMapWantedBound:  {ebpf.Hash, 8, 1, 64, false},
	itersMapBoundLookup:  {ebpf.Array, 4, 4, 1, false},
	itersMapWantedFilter: {ebpf.Array, 4, 512, 1, true},
	itersMapWantedPorts:  {ebpf.Hash, 2, 1, 64, false},
}

// ErrSharedElsewhere: another running tracer already shares this build's
// iterators.
var ErrSharedElsewhere = errors.New("another bindwatch tracer already shares its iterators")

// Shared is a tracer's pinned copy of the iterators (Share). Close removes
// it.
type Shared struct {
	Path string
	root *os.File
	dir  *os.File // flocked while the tracer lives
}

// Share loads a copy of the iterators and pins it for the one-shot
// commands. It fails with ErrSharedElsewhere when another live tracer
// shares already, and with an error wrapping os.ErrNotExist when no bpffs
// is mounted at /sys/fs/bpf.
func Share() (*Shared, error) {
	root, err := openSharedRoot(true)
	if err != nil {
		return nil, err
	}
	s := &Shared{Path: SharedRoot() + "/" + sharedName(), root: root}
	if err := s.claim(); err != nil {
		s.Close() // and its lock, if it took the directory
		return nil, err
	}
	it, err := LoadIterators(OwnerVariants)
	if err != nil {
		s.Close()
		return nil, err
	}
	defer it.Close() // the pins keep them loaded
	pins := map[string]interface{ Pin(string) error }{pinOwners: it.Owners, pinTimewait: it.Timewait}
	for name, m := range it.maps() {
		pins[name] = m
	}
	for name, obj := range pins {
		if err := obj.Pin(s.at(name)); err != nil {
			s.Close()
			return nil, fmt.Errorf("pin %s/%s: %w", s.Path, name, err)
		}
	}
	// Last: a command finds the run lock only once every pin is there.
	if err := unix.Mkdirat(int(s.dir.Fd()), runLockDir, 0o700); err != nil {
		s.Close()
		return nil, fmt.Errorf("create %s/%s: %w", s.Path, runLockDir, err)
	}
	return s, nil
}

// claim takes this build's directory: created, or left by a tracer that
// no longer runs (emptied), and removes what other builds' dead tracers
// left.
func (s *Shared) claim() error {
	names, err := s.root.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", SharedRoot(), err)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "iters-") {
			continue
		}
		d, err := openSharedDir(s.root, name)
		if err != nil {
			continue // not ours to touch; commands refuse it too
		}
		if unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			d.Close()
			if name == sharedName() {
				return ErrSharedElsewhere
			}
			continue // another build's live tracer
		}
		if name == sharedName() {
			s.dir = d
			return emptyDir(d, SharedRoot()+"/"+name)
		}
		if emptyDir(d, SharedRoot()+"/"+name) == nil {
			unix.Unlinkat(int(s.root.Fd()), name, unix.AT_REMOVEDIR)
		}
		d.Close()
	}
	if err := unix.Mkdirat(int(s.root.Fd()), sharedName(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.Path, err)
	}
	d, err := openSharedDir(s.root, sharedName())
	if err != nil {
		return err
	}
	if unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		d.Close()
		return ErrSharedElsewhere // another tracer created it just now
	}
	s.dir = d
	return nil
}

// at is name in the shared directory, as a path the kernel resolves
// through the directory already opened and checked.
func (s *Shared) at(name string) string { return fdPath(s.dir, name) }

// Close unpins the iterators (commands using them keep them until they
// exit) and removes the directory.
func (s *Shared) Close() {
	if s.dir != nil {
		if emptyDir(s.dir, s.Path) == nil {
			unix.Unlinkat(int(s.root.Fd()), sharedName(), unix.AT_REMOVEDIR)
		}
		s.dir.Close()
	}
	s.root.Close()
}

// OpenShared opens the iterators a running tracer shares, after checking
// that they are this build's: the directories root's and 0700 on a
// bpffs, the links' programs the iterators, using exactly the pinned maps
// of the shapes the programs declare. Each run of them is bracketed by
// Begin.
func OpenShared() (*Iterators, error) {
	root, err := openSharedRoot(false)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	dir, err := openSharedDir(root, sharedName())
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	run, err := openSharedDir(dir, runLockDir)
	if err != nil {
		return nil, err
	}
	it := &Iterators{run: run}
	if err := it.openPins(dir); err != nil {
		it.Close()
		return nil, fmt.Errorf("shared iterators in %s/%s: %w", SharedRoot(), sharedName(), err)
	}
	return it, nil
}

// openPins opens and checks the pinned links and maps of dir.
func (it *Iterators) openPins(dir *os.File) error {
	ids := map[ebpf.MapID]bool{}
	for name, want := range sharedMaps {
		m, err := ebpf.LoadPinnedMap(fdPath(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) && want.optional {
			continue
		}
		if err != nil {
			return err
		}
		*it.mapFields()[name] = m
		if m.Type() != want.typ || m.KeySize() != want.key || m.ValueSize() != want.value || m.MaxEntries() != want.capacity {
			return fmt.Errorf("map %s is a %v of %d-byte keys, %d-byte values, %d entries: not this build's", name, m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries())
		}
		info, err := mapInfo(m.FD())
		if err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
		ids[ebpf.MapID(info.ID)] = true
	}
	used := map[ebpf.MapID]bool{}
	var err error
	if it.Owners, it.Owner, err = openPinnedIter(dir, pinOwners, OwnerVariants, ids, used); err != nil {
		return err
	}
	if (it.Owner == SocketOwners) != (it.WantedFilter != nil) {
		return fmt.Errorf("%s is pinned with %s", itersMapWantedFilter, it.Owner)
	}
	if it.Timewait, _, err = openPinnedIter(dir, pinTimewait, []string{itersProgTimewaitSockets}, ids, used); err != nil {
		return err
	}
	if len(used) != len(ids) {
		return errors.New("a pinned map is used by neither iterator")
	}
	return nil
}

// openPinnedIter opens the iterator link pinned as name in dir, whose
// program must be one of programs and use only maps among ids (which it
// marks in used).
func openPinnedIter(dir *os.File, name string, programs []string, ids, used map[ebpf.MapID]bool) (*link.Iter, string, error) {
	l, err := link.LoadPinnedLink(fdPath(dir, name), nil)
	if err != nil {
		return nil, "", err
	}
	iter, ok := l.(*link.Iter)
	if !ok {
		l.Close()
		return nil, "", fmt.Errorf("%s is not an iterator link", name)
	}
	info, err := iter.Info()
	if err != nil {
		iter.Close()
		return nil, "", fmt.Errorf("link %s: %w", name, err)
	}
	typ, progName, mapIDs, err := progInfo(uint32(info.Program))
	if err != nil {
		iter.Close()
		return nil, "", fmt.Errorf("program of %s: %w", name, err)
	}
	// The kernel keeps BPF_OBJ_NAME_LEN-1 bytes of a name (the variants
	// differ within them: socket_owners, socket_owners_p).
	i := slices.IndexFunc(programs, func(p string) bool { return p[:min(len(p), unix.BPF_OBJ_NAME_LEN-1)] == progName })
	if i < 0 || typ != unix.BPF_PROG_TYPE_TRACING {
		iter.Close()
		return nil, "", fmt.Errorf("%s runs program %q (type %d), not one of %s (tracing programs)", name, progName, typ, strings.Join(programs, ", "))
	}
	for _, raw := range mapIDs {
		id := ebpf.MapID(raw)
		if !ids[id] {
			iter.Close()
			return nil, "", fmt.Errorf("%s's program uses map %d, which is not pinned beside it", name, id)
		}
		used[id] = true
	}
	return iter, programs[i], nil
}

// Begin starts one run of the iterators, and end ends it: every run
// starts from empty input maps, whatever the last one left there (a
// command killed in the middle of one, with shared iterators). Shared ones
// are run by one process at a time: Begin waits for the others first (at
// most sharedWait).
func (it *Iterators) Begin() (end func(), err error) {
	end = func() {}
	if it.run != nil {
		fd := int(it.run.Fd())
		for deadline := time.Now().Add(sharedWait); ; {
			err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock the shared iterators (%s): %w", it.run.Name(), err)
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the shared iterators are held by another bindwatch command for %v (stopped?): find it with `fuser -v %s`", sharedWait, it.run.Name())
			}
			time.Sleep(time.Millisecond)
		}
		end = func() { unix.Flock(fd, unix.LOCK_UN) }
	}
	for _, m := range []*ebpf.Map{it.WantedInodes, it.WantedBound, it.WantedPorts} {
		if err := clearHash(m); err != nil {
			end()
			return nil, err
		}
	}
	if err := it.BoundLookup.Put(uint32(0), uint32(0)); err != nil {
		end()
		return nil, fmt.Errorf("clear bound_lookup: %w", err)
	}
	return end, nil
}

// sharedWait bounds Begin's wait for other users of shared iterators.
var sharedWait = 2 * time.Second

// clearHash deletes every key of a hash map.
func clearHash(m *ebpf.Map) error {
	key := make([]byte, m.KeySize())
	for {
		// The first key each time: deleting while walking would skip.
		if err := m.NextKey(nil, &key); errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		} else if err != nil {
			return fmt.Errorf("clear %s: %w", m, err)
		}
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear %s: %w", m, err)
		}
	}
}

// openSharedRoot opens SharedRoot, checked (and made with create).
func openSharedRoot(create bool) (*os.File, error) {
	fd, err := unix.Open(bpffs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: bpffs, Err: err}
	}
	mount := os.NewFile(uintptr(fd), bpffs)
	defer mount.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: bpffs, Err: err}
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("%s is not a bpffs: %w (mount one: mount -t bpf bpf %s)", bpffs, os.ErrNotExist, bpffs)
	}
	if create {
		if err := unix.Mkdirat(fd, "bindwatch", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", SharedRoot(), err)
		}
	}
	return openSharedDir(mount, "bindwatch")
}

// openSharedDir opens the directory name in parent, which must be a
// directory (not a symbolic link) of root's, mode 0700, on a bpffs.
func openSharedDir(parent *os.File, name string) (*os.File, error) {
	path := parent.Name() + "/" + name
	fd, err := unix.Openat(int(parent.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		var st unix.Stat_t
		unix.Fstatat(int(parent.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		what := "not a directory"
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			what = "a symbolic link"
		}
		return nil, fmt.Errorf("refusing %s: %s (bindwatch shares iterators only in root's directories of mode 0700 on a bpffs; remove it)", path, what)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := unix.Fstatfs(fd, &fs); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if fs.Type != unix.BPF_FS_MAGIC || st.Uid != 0 || st.Mode&0o7777 != 0o700 {
		f.Close()
		return nil, fmt.Errorf("refusing %s: owner uid %d, mode %04o (bindwatch shares iterators only in root's directories of mode 0700 on a bpffs; remove it)", path, st.Uid, st.Mode&0o7777)
	}
	return f, nil
}

// emptyDir unpins everything in d (a shared directory: pins, and the run
// lock directory).
func emptyDir(d *os.File, path string) error {
	if _, err := d.Seek(0, 0); err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	for _, name := range names {
		flag := 0
		if name == runLockDir {
			flag = unix.AT_REMOVEDIR
		}
		if err := unix.Unlinkat(int(d.Fd()), name, flag); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", path, name, err)
		}
	}
	return nil
}

// fdPath names name in the open directory d through /proc/self/fd, so
// that the kernel resolves it from d itself.
func fdPath(d *os.File, name string) string {
	return fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name)
}
