package sink

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const gzSuffix = ".gz"

// sameFileForReading opens FILE for reading — the file being written, as
// its inode proves — so that compressing it after the rename reads what
// was written, whatever its name points to by then. nil if that cannot be
// made sure of (the file is then left uncompressed).
func (w *File) sameFileForReading() *os.File {
	fd, err := unix.Openat(int(w.dir.Fd()), w.base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstat(int(w.f.Fd()), &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino || a.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), w.path)
}

// compress writes src (the rotated file, now called name) to name.gz in
// the output's directory, then removes name if it still is src. The gzip
// is made under a temporary name created exclusively and without
// following symlinks, and renamed into place once whole.
func (w *File) compress(src *os.File, name string) {
	defer src.Close()
	dir := int(w.dir.Fd())
	tmp := name + gzSuffix + ".tmp"
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dir, tmp, flags, 0o640)
	if errors.Is(err, unix.EEXIST) { // left by a crash, or planted: unlinkat removes a link, never its target
		unix.Unlinkat(dir, tmp, 0)
		fd, err = unix.Openat(dir, tmp, flags, 0o640)
	}
	if err != nil {
		fmt.Fprintf(w.warnOut(), "bindwatch: compress %s: create %s: %v; %s stays uncompressed\n", name, tmp, err, name)
		return
	}
	out := os.NewFile(uintptr(fd), tmp)
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, src)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dir, tmp, dir, name+gzSuffix)
	}
	if err != nil {
		unix.Unlinkat(dir, tmp, 0)
		fmt.Fprintf(w.warnOut(), "bindwatch: compress %s: %v; it stays uncompressed\n", name, err)
		return
	}
	var a, b unix.Stat_t
	if unix.Fstat(int(src.Fd()), &a) == nil && unix.Fstatat(dir, name, &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
		unix.Unlinkat(dir, name, 0)
	}
}
