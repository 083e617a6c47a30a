package iterload

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestSharedMapShapes: the shapes OpenShared demands of pinned maps are
// the ones this build's object declares.
func TestSharedMapShapes(t *testing.T) {
	spec, err := loadIters()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, m := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // a data section no program uses: never created
		}
		n++
		want, ok := sharedMaps[name]
		if !ok {
			t.Errorf("map %s is not in sharedMaps", name)
			continue
		}
		if m.Type != want.typ || m.KeySize != want.key || m.ValueSize != want.value || m.MaxEntries != want.capacity {
			t.Errorf("map %s: the object has %v %d/%d/%d, sharedMaps %v %d/%d/%d", name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries,
				want.typ, want.key, want.value, want.capacity)
		}
	}
	if n != len(sharedMaps) {
		t.Errorf("the object has %d maps, sharedMaps %d", n, len(sharedMaps))
	}
}

// privateBPFFS mounts a bpffs of the test's own (each mount is a new one)
// and points the shared iterators at it, so that the tracers other tests
// run, sharing in /sys/fs/bpf, are not disturbed.
func privateBPFFS(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpffs at %s: %v", dir, err)
	}
	old := bpffs
	bpffs = dir
	t.Cleanup(func() {
		bpffs = old
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// ownersOf runs it's socket-owner iterator for inode, as resolve does,
// and returns the pids it reports.
func ownersOf(t *testing.T, it *Iterators, inode uint64) []int {
	t.Helper()
	end, err := it.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	if err := it.WantedInodes.Put(inode, uint8(1)); err != nil {
		t.Fatal(err)
	}
	if it.WantedFilter != nil {
		var all InodeFilter
		for i := range all.Bits {
			all.Bits[i] = ^uint64(0)
		}
		if err := it.WantedFilter.Put(uint32(0), &all); err != nil {
			t.Fatal(err)
		}
	}
	r, err := it.Owners.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	const size = int(unsafe.Sizeof(SocketOwner{}))
	for ; len(data) >= size; data = data[size:] {
		var rec SocketOwner
		if _, err := binary.Decode(data[:size], binary.NativeEndian, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Inode != inode {
			t.Errorf("the iterator reported inode %d, not asked for", rec.Inode)
		}
		pids = append(pids, int(rec.Tgid))
	}
	return pids
}

// listener returns the inode of a TCP socket this process listens on.
func listener(t *testing.T) uint64 {
	t.Helper()
	fd := testenv.Hold(t, "tcp", "127.0.0.1", 0, testenv.Opts{})
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestShareAndOpen: a tracer's pinned copy is found and used by a
// command; a second tracer does not share; what a killed command left in
// the input maps is cleared before the next run; Close removes it all.
func TestShareAndOpen(t *testing.T) {
	mount := privateBPFFS(t)
	s, err := Share()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mount, "bindwatch", sharedName())
	if s.Path != dir {
		t.Errorf("shared in %s, want %s", s.Path, dir)
	}
	for _, p := range []string{filepath.Join(mount, "bindwatch"), dir, filepath.Join(dir, runLockDir)} {
		if st, err := os.Lstat(p); err != nil || st.Mode() != os.ModeDir|0o700 {
			t.Errorf("%s: %v %v, want a directory of mode 0700", p, st.Mode(), err)
		}
	}
	if again, err := Share(); !errors.Is(err, ErrSharedElsewhere) {
		if again != nil {
			again.Close()
		}
		t.Errorf("a second Share: %v, want ErrSharedElsewhere", err)
	}

	it, err := OpenShared()
	if err != nil {
		t.Fatal(err)
	}
	if it.run == nil || it.coll != nil {
		t.Fatal("OpenShared did not give the shared copy")
	}
	ino := listener(t)
	// A command killed in the middle of a run leaves its inodes and the
	// bound-only switch on: the next run must not report them.
	stray := listener(t)
	if err := it.WantedInodes.Put(stray, uint8(1)); err != nil {
		t.Fatal(err)
	}
	if err := it.BoundLookup.Put(uint32(0), uint32(1)); err != nil {
		t.Fatal(err)
	}
	if pids := ownersOf(t, it, ino); len(pids) != 1 || pids[0] != os.Getpid() {
		t.Errorf("owners of the test's listener: %v, want [%d]", pids, os.Getpid())
	}

	// One run at a time: a second command waits, and one that waits too
	// long (the first stopped) says how to find the holder.
	second, err := OpenShared()
	if err != nil {
		t.Fatal(err)
	}
	end, err := it.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { sharedWait = d }(sharedWait)
	sharedWait = 100 * time.Millisecond
	if _, err := second.Begin(); err == nil || !strings.Contains(err.Error(), "fuser -v "+filepath.Join(dir, runLockDir)) {
		t.Errorf("Begin while another run holds them: %v", err)
	}
	go func() { time.Sleep(20 * time.Millisecond); end() }()
	if end2, err := second.Begin(); err != nil {
		t.Errorf("Begin once the other run ended: %v", err)
	} else {
		end2()
	}
	second.Close()
	it.Close()

	// A map not of the shape this build's programs use is refused.
	if err := os.Remove(filepath.Join(dir, itersMapWantedPorts)); err != nil {
		t.Fatal(err)
	}
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Pin(filepath.Join(dir, itersMapWantedPorts)); err != nil {
		t.Fatal(err)
	}
	if it, err := OpenShared(); err == nil {
		it.Close()
		t.Error("OpenShared used a wanted_ports of 4-byte keys")
	} else if !strings.Contains(err.Error(), "not this build's") {
		t.Errorf("OpenShared with a wrong map: %v", err)
	}

	s.Close()
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Close: %v, want it removed", dir, err)
	}
	if it, err := OpenShared(); err == nil {
		it.Close()
		t.Error("OpenShared after Close found iterators")
	}
}

// TestShareAfterKilledTracer: a tracer killed with SIGKILL leaves its pins
// and no lock; a command still uses them, and the next tracer takes the
// directory over. Another build's leftover directory is removed.
func TestShareAfterKilledTracer(t *testing.T) {
	mount := privateBPFFS(t)
	s, err := Share()
	if err != nil {
		t.Fatal(err)
	}
	s.dir.Close() // as the kernel does for a killed tracer: the lock goes, the pins stay
	s.root.Close()
	old := filepath.Join(mount, "bindwatch", "iters-0000000000000000")
	if err := os.Mkdir(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(old, runLockDir), 0o700); err != nil {
		t.Fatal(err)
	}

	it, err := OpenShared()
	if err != nil {
		t.Fatalf("the killed tracer's pins: %v", err)
	}
	ino := listener(t)
	if pids := ownersOf(t, it, ino); len(pids) != 1 || pids[0] != os.Getpid() {
		t.Errorf("owners through the killed tracer's pins: %v, want [%d]", pids, os.Getpid())
	}
	it.Close()

	next, err := Share()
	if err != nil {
		t.Fatalf("the next tracer: %v", err)
	}
	defer next.Close()
	if _, err := os.Lstat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("another build's dead directory: %v, want it removed", err)
	}
	it, err = OpenShared()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if pids := ownersOf(t, it, ino); len(pids) != 1 {
		t.Errorf("owners through the next tracer's pins: %v", pids)
	}
}

// TestSharedRefusesPlanted: /sys/fs/bpf is world-writable (sticky), so
// anyone may create bindwatch there first, or a symbolic link by that
// name. Neither the tracer nor a command uses such a directory; the
// tracer says what to remove.
func TestSharedRefusesPlanted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root string)
	}{
		{"directory of another user", func(t *testing.T, root string) {
			if err := os.Mkdir(root, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(root, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory open to others", func(t *testing.T, root string) {
			if err := os.Mkdir(root, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(root, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{"symbolic link to root's directory", func(t *testing.T, root string) {
			target := filepath.Join(filepath.Dir(root), "elsewhere")
			if err := os.Mkdir(target, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, root); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mount := privateBPFFS(t)
			root := filepath.Join(mount, "bindwatch")
			tc.plant(t, root)
			s, err := Share()
			if err == nil {
				s.Close()
				t.Fatal("Share used a planted directory")
			}
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrSharedElsewhere) {
				t.Errorf("Share: %v: the tracer must say so (not the quiet no-bpffs and shared-elsewhere errors)", err)
			}
			if !strings.Contains(err.Error(), "refusing "+root) {
				t.Errorf("Share: %v: does not name %s", err, root)
			}
			t.Logf("Share: %v", err)
			if it, err := OpenShared(); err == nil {
				it.Close()
				t.Error("OpenShared used a planted directory")
			}
		})
	}
}

// TestShareWithoutBPFFS: no bpffs, nothing shared, and the reason is the
// quiet one (os.ErrNotExist).
func TestShareWithoutBPFFS(t *testing.T) {
	testenv.RequireRoot(t)
	old := bpffs
	bpffs = t.TempDir()
	defer func() { bpffs = old }()
	if s, err := Share(); !errors.Is(err, os.ErrNotExist) {
		if s != nil {
			s.Close()
		}
		t.Errorf("Share without a bpffs: %v, want os.ErrNotExist", err)
	}
}

// TestSharedRefusesOtherProgram: an iterator link pinned under a name
// whose program is not that name's (here the owner iterator's link as
// timewait) is refused, by the program name the kernel keeps.
func TestSharedRefusesOtherProgram(t *testing.T) {
	privateBPFFS(t)
	s, err := Share()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := LoadIterators(OwnerVariants)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	at := filepath.Join(s.Path, pinTimewait)
	if err := os.Remove(at); err != nil {
		t.Fatal(err)
	}
	if err := other.Owners.Pin(at); err != nil {
		t.Fatal(err)
	}
	it, err := OpenShared()
	if err == nil {
		it.Close()
		t.Fatal("OpenShared used a timewait link that runs the owner iterator")
	}
	if want := pinTimewait + ` runs program "socket_owners`; !strings.Contains(err.Error(), want) {
		t.Errorf("OpenShared: %v, want it to say %s…", err, want)
	}
}
