package sink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"golang.org/x/sys/unix"
)

// FileOptions configure a File.
type FileOptions struct {
	// Form encodes each record (JSON by default).
	Form Form
	// MaxSize, if > 0, rotates the file before a write would take it past
	// MaxSize bytes: FILE becomes FILE.1, FILE.1 FILE.2 and so on, keeping
	// MaxFiles rotated files (at least 1).
	MaxSize  int64
	MaxFiles int
	// Compress gzips each rotated file (FILE.1.gz, …).
	Compress bool
	// Warn receives the one-line messages of an outage and of a
	// tightened file mode (standard error).
	Warn io.Writer
}

// File writes records as whole lines to a file or a stream (standard
// output). Each record — with the output_lost notice before it, if one is
// due — is one write(2) on a file opened O_APPEND, and a short write (a
// full disk) is truncated back, so the file never ends in half a record.
//
// A file named by path is opened with O_NOFOLLOW, and reopened and
// rotated through a descriptor of its directory (openat, renameat): a
// symlink planted in a shared directory is refused or moved, never
// followed. It is safe for concurrent use: SIGHUP reopens it from another
// goroutine.
type File struct {
	mu   sync.Mutex
	opts FileOptions
	loss lossBook

	path string   // "" for a stream
	dir  *os.File // the directory of path
	base string   // the name in dir
	f    *os.File
	size int64 // bytes in f, for rotation
	// torn: a short write could not be truncated back, so the file ends in
	// part of a line, which the next write ends first.
	torn        bool
	rotateAfter time.Time      // after a failed rotation, when to try again
	compressing sync.WaitGroup // the background gzip of FILE.1
	reopenAfter time.Time      // after a failed write, when reopening may help again
}

// OpenFile opens path for appending records (created 0640), or says in one
// sentence why not: a symlink, a directory that is not there, a file
// others may write or that has other hard links.
func OpenFile(path string, opts FileOptions) (*File, error) {
	if err := host.CheckDirLinks(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open --output %s: %w", path, err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("open --output %s: %w (hint: check that the directory exists)", path, err)
	}
	w := &File{opts: opts, path: path, dir: dir, base: filepath.Base(path)}
	w.loss = newLossBook("file", "--output "+path, opts.Warn)
	if w.opts.MaxFiles < 1 {
		w.opts.MaxFiles = 1
	}
	if w.f, err = w.open(); err != nil {
		dir.Close()
		return nil, err
	}
	w.size = fileSize(w.f)
	return w, nil
}

// NewStream writes records to an open stream such as os.Stdout, called
// output ("stdout", "stderr") in output_lost records.
func NewStream(f *os.File, output string, opts FileOptions) *File {
	w := &File{opts: opts, f: f}
	w.loss = newLossBook(output, "standard "+map[string]string{"stdout": "output", "stderr": "error"}[output], opts.Warn)
	return w
}

// SetForm sets how records are encoded (once the format is known: it may
// depend on Terminal).
func (w *File) SetForm(form Form) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opts.Form = form
}

// Terminal tells whether the output is a terminal (people read it).
func (w *File) Terminal() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := unix.IoctlGetTermios(int(w.f.Fd()), unix.TCGETS)
	return err == nil
}

// open opens base in dir for appending, without following a symlink.
func (w *File) open() (*os.File, error) {
	fd, err := unix.Openat(int(w.dir.Fd()), w.base, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0o640)
	if errors.Is(err, unix.ELOOP) {
		target, _ := os.Readlink(w.path)
		return nil, fmt.Errorf("open --output %s: it is a symbolic link (to %s), and bindwatch does not follow symlinks for what it writes: in a shared directory one may have been planted to make root overwrite another file (hint: give the real path, or remove the link; without --output records go to standard output)", w.path, target)
	}
	if err != nil {
		return nil, fmt.Errorf("open --output %s: %w (hint: check that the directory is writable)", w.path, err)
	}
	f := os.NewFile(uintptr(fd), w.path)
	if err := w.checkOwnership(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkOwnership refuses a regular file that others could use to forge or
// erase records — hard-linked elsewhere, or writable by group or others
// and owned by someone else — and tightens the mode of one of ours.
func (w *File) checkOwnership(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("open --output %s: %w", w.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil // a pipe or a device (/dev/null): nothing to own
	}
	if st.Nlink > 1 {
		return fmt.Errorf("open --output %s: refusing a file with %d hard links: it may be linked to a file bindwatch must not write (hint: remove it, or give another path)", w.path, st.Nlink)
	}
	mode := st.Mode & 0o7777
	if mode&0o022 == 0 {
		return nil
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("open --output %s: refusing a file that uid %d owns and group or others can write (mode %04o): anyone could forge or erase records (hint: chmod go-w %s, or remove it)", w.path, st.Uid, mode, w.path)
	}
	if err := unix.Fchmod(int(f.Fd()), mode&^0o022); err != nil {
		return fmt.Errorf("open --output %s: group or others can write it (mode %04o) and making it %04o failed: %w (hint: chmod go-w %s)", w.path, mode, mode&^0o022, err, w.path)
	}
	fmt.Fprintf(w.warnOut(), "bindwatch: --output %s was writable by group or others (mode %04o): made it %04o, so that no one else can forge or erase records\n", w.path, mode, mode&^0o022)
	return nil
}

func (w *File) warnOut() io.Writer {
	if w.opts.Warn == nil {
		return io.Discard
	}
	return w.opts.Warn
}

// Write writes rec as one line (its stop record with this output's
// counts), after an output_lost notice if records were lost before it.
// It fails only if rec cannot be encoded.
func (w *File) Write(rec events.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	rec = w.loss.stamp(rec)
	line, err := w.encode(rec)
	if err != nil {
		return err
	}
	if line == nil { // the form leaves it out (--quiet)
		return nil
	}
	notice := w.loss.notice(time.Now())
	if notice != nil {
		n, err := w.encode(notice)
		if err != nil {
			return err
		}
		line = append(n, line...)
	}
	err = w.write(line)
	if err != nil && w.canReopen(err) {
		// A descriptor gone bad (EIO, ESTALE, EBADF): a fresh one may
		// work. Not for a full disk: that waits for space.
		w.loss.failed(rec, err, false)
		if w.reopenLocked() == nil {
			err = w.write(line)
		}
	}
	if err != nil {
		w.loss.failed(rec, err, true)
		if st, ok := rec.(*events.Stop); ok {
			// The last word: nothing comes after it to carry the count.
			fmt.Fprintf(w.warnOut(), "bindwatch: the stop record could not be written to %s (%s): %s\n", w.loss.name, errText(err), events.Text(st))
		}
		return nil
	}
	w.loss.wrote(notice)
	return nil
}

func (w *File) encode(rec events.Record) ([]byte, error) {
	form := w.opts.Form
	if form == nil {
		form = JSON
	}
	b, err := form(rec)
	if err != nil || b == nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// write writes line in one write(2), rotating first if it would pass
// MaxSize. A short write is truncated back.
func (w *File) write(line []byte) error {
	if w.f == nil {
		return errors.New("no file open")
	}
	if w.opts.MaxSize > 0 && w.size > 0 && w.size+int64(len(line)) > w.opts.MaxSize {
		w.rotate()
	}
	if w.torn {
		line = append([]byte{'\n'}, line...)
	}
	n, err := w.f.Write(line)
	w.size += int64(n)
	if err == nil {
		w.torn = false
		return nil
	}
	if n > 0 {
		w.truncateBack(int64(n))
	}
	return err
}

// truncateBack takes the n bytes of a short write off the end of the file,
// so that its last line is a whole record.
func (w *File) truncateBack(n int64) {
	var st unix.Stat_t
	if err := unix.Fstat(int(w.f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < n {
		w.torn = true
		return
	}
	if err := unix.Ftruncate(int(w.f.Fd()), st.Size-n); err != nil {
		w.torn = true
		return
	}
	w.size = st.Size - n
}

// canReopen: a write error a fresh descriptor may cure, for a named file,
// at most once a second.
func (w *File) canReopen(err error) bool {
	if w.path == "" || time.Now().Before(w.reopenAfter) {
		return false
	}
	if !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ESTALE) && !errors.Is(err, syscall.EBADF) && !errors.Is(err, os.ErrClosed) {
		return false
	}
	w.reopenAfter = time.Now().Add(time.Second)
	return true
}

// Reopen opens the file's path anew and writes there from now on: SIGHUP
// after logrotate moved the file (create) or truncated it (copytruncate).
// If the path cannot be opened, writing goes on to the old file and the
// error is said on standard error.
func (w *File) Reopen() error {
	if w.path == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.reopenLocked()
	if err != nil {
		fmt.Fprintf(w.warnOut(), "bindwatch: reopen: %v; still writing to the file opened before\n", err)
	}
	return err
}

func (w *File) reopenLocked() error {
	f, err := w.open()
	if err != nil {
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.size, w.torn = f, fileSize(f), false
	return nil
}

// rotate moves FILE.N-1 to FILE.N, …, FILE to FILE.1 within the file's
// directory and opens a new FILE. renameat moves a planted symlink, never
// its target; what was FILE.MaxFiles is removed. With Compress, FILE.1 is
// then gzipped to FILE.1.gz in the background (rotated files are FILE.N or
// FILE.N.gz: one whose compression failed stays plain). If the new FILE
// cannot be opened, writing goes on to the old one (now FILE.1) and
// rotation is tried again a minute later.
func (w *File) rotate() {
	if time.Now().Before(w.rotateAfter) {
		return
	}
	w.compressing.Wait() // the last rotation's FILE.1 is read until then
	var src *os.File
	if w.opts.Compress {
		src = w.sameFileForReading()
	}
	dir := int(w.dir.Fd())
	for _, sfx := range []string{"", gzSuffix} {
		unix.Unlinkat(dir, w.rotated(w.opts.MaxFiles)+sfx, 0)
	}
	for i := w.opts.MaxFiles - 1; i >= 1; i-- {
		for _, sfx := range []string{"", gzSuffix} {
			unix.Renameat(dir, w.rotated(i)+sfx, dir, w.rotated(i+1)+sfx)
		}
	}
	if err := unix.Renameat(dir, w.base, dir, w.rotated(1)); err != nil {
		if src != nil {
			src.Close()
		}
		w.rotateAfter = time.Now().Add(time.Minute)
		fmt.Fprintf(w.warnOut(), "bindwatch: rotate --output %s: %v; writing on to it (tried again in a minute)\n", w.path, err)
		return
	}
	if err := w.reopenLocked(); err != nil {
		w.rotateAfter = time.Now().Add(time.Minute)
		fmt.Fprintf(w.warnOut(), "bindwatch: rotate: %v; writing on to %s.1 (tried again in a minute)\n", err, w.path)
		if src != nil {
			src.Close()
		}
		return
	}
	if src != nil {
		w.compressing.Add(1)
		go func() {
			defer w.compressing.Done()
			w.compress(src, w.rotated(1))
		}()
	}
}

func (w *File) rotated(i int) string { return w.base + "." + strconv.Itoa(i) }

// Stats is what the file could not write.
func (w *File) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.loss.stats()
}

// Close closes a named file; a stream is left open.
func (w *File) Close() error {
	if w.path == "" {
		return nil
	}
	w.compressing.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dir.Close()
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

func fileSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}
