package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// readyFile is a --ready-file this session created, to remove at its end.
type readyFile struct {
	path     string
	dev, ino uint64
}

// checkReadyFile refuses a ready file that exists already, before anything
// is loaded: scripts would take a leftover for the new session's.
func checkReadyFile(path string) error {
	if err := host.CheckDirLinks(filepath.Dir(path)); err != nil {
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("ready file %s exists already (hint: remove it first — a previous run's, or one planted there: bindwatch never writes through an existing file or symlink)", path)
	}
	return nil
}

// createReadyFile creates path, which must not exist — O_EXCL, and
// O_NOFOLLOW so that a symlink planted in a world-writable directory is
// never followed — and writes the backend's name into it.
func createReadyFile(path, backend string) (*readyFile, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		why := "hint: check the directory exists and is writable"
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ELOOP) {
			why = "hint: something created it since bindwatch started — a symlink planted there is never followed; remove it, or use a directory only you can write to"
		}
		return nil, fmt.Errorf("create ready file %s: %w (%s)", path, err, why)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat ready file %s: %w", path, err)
	}
	r := &readyFile{path: path, dev: st.Dev, ino: st.Ino}
	if _, err := f.WriteString(backend + "\n"); err != nil {
		r.remove()
		return nil, fmt.Errorf("write ready file %s: %w", path, err)
	}
	return r, nil
}

// remove deletes the ready file — if it is still the one created: a file
// put in its place since is left alone.
func (r *readyFile) remove() {
	if r == nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(r.path, &st); err != nil || st.Dev != r.dev || st.Ino != r.ino {
		return
	}
	os.Remove(r.path)
}
