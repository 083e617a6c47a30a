package enrich

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Size limits for the runtime's state files. They are written by the
// runtime, but from what a container's creator chose (labels, annotations,
// names): a file over its limit is not read at all.
const (
	maxConfigSize  = 1 << 20  // an OCI config.json or docker config.v2.json
	maxStorageSize = 32 << 20 // containers/storage's containers.json, every container of the host
	maxDirEntries  = 1 << 16  // entries listed in one directory
)

// readBeneath reads the file at rel under dir, refusing any symbolic link on
// the way (the state directories are the runtime's, but what is under them
// is named after containers, and bindwatch reads it as root) and any file
// larger than limit. dir itself is the administrator's choice and may be a
// link (/var/lib/docker on another disk).
func readBeneath(dir, rel string, limit int64) ([]byte, error) {
	root, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) { // before Linux 5.6: at least the last component
		fd, err = unix.Openat(int(root.Fd()), rel, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, rel))
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", f.Name())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes, not read", f.Name(), limit)
	}
	return b, nil
}

// listDir names the entries of dir (not following a link at dir's last
// component), at most maxDirEntries of them.
func listDir(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(maxDirEntries)
	if err == io.EOF {
		err = nil
	}
	return names, err
}
