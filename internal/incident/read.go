package incident

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
)

// maxLine bounds one record, with its newline: the tracer writes none
// larger (events.MaxRecordBytes); longer lines are counted as malformed.
const maxLine = events.MaxRecordBytes + 1

// Log is what reading bindwatch's JSON lines back found: how many records
// incidents are built from, the time of the last, the files read, and
// what had to be skipped.
type Log struct {
	Read    int
	Last    time.Time
	Files   []string
	Skipped Skipped
	emit    func(rec events.Record)
	// others counts bindwatch records incidents are not built from (who,
	// free, …); firstOther is the first line that is none (NoRecord).
	others     int
	firstOther []byte
}

// logFile is one file to read: a path given, or a rotated sibling of one.
type logFile struct {
	path    string
	sibling string // for a sibling: the path it was found beside
}

// files lists the files to read for the paths given: each path, preceded
// by its rotated siblings (PATH.N and PATH.N.gz, oldest — highest N —
// first), once each.
func files(paths []string) []logFile {
	seen := map[string]bool{}
	var out []logFile
	add := func(f logFile) {
		if !seen[f.path] {
			seen[f.path] = true
			out = append(out, f)
		}
	}
	for _, p := range paths {
		for _, s := range Rotated(p) {
			add(logFile{path: s, sibling: p})
		}
		add(logFile{path: p})
	}
	return out
}

// Rotated lists PATH.N and PATH.N.gz (logrotate's names), oldest first.
func Rotated(path string) []string {
	matches, _ := filepath.Glob(globEscape(path) + ".*")
	type sib struct {
		n    int
		path string
	}
	var sibs []sib
	for _, m := range matches {
		suffix := strings.TrimSuffix(strings.TrimPrefix(m, path+"."), ".gz")
		n, err := strconv.Atoi(suffix)
		if err != nil || n <= 0 {
			continue
		}
		sibs = append(sibs, sib{n, m})
	}
	sort.Slice(sibs, func(i, j int) bool { return sibs[i].n > sibs[j].n })
	out := make([]string, len(sibs))
	for i, s := range sibs {
		out[i] = s.path
	}
	return out
}

func globEscape(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(p)
}

// ReadFiles reads the files (see Files), or stdin when there are none, and
// hands each record incidents are built from to emit, in the order they
// were written: a log is streamed, never held whole. Nothing is fatal: a
// file that cannot be read is listed in Skipped.Unreadable, and the rest
// is read.
//
// A rotated sibling is found, not named: it is read only when it is a
// regular file owned by the log's owner or by root and not writable by
// every user — anyone may plant a FIFO or a forged log beside a log in a
// shared directory. A refused one is listed in Skipped.Refused. A path
// given is read whatever it is (a pipe from a shell's <(…) too).
func ReadFiles(paths []string, stdin io.Reader, emit func(rec events.Record)) *Log {
	l := &Log{emit: emit}
	if len(paths) == 0 {
		l.read(stdin)
	}
	for _, f := range files(paths) {
		var err error
		if f.sibling != "" {
			err = l.readSibling(f.path, f.sibling)
		} else {
			err = l.readFile(f.path)
		}
		var refused refusedError
		switch {
		case errors.As(err, &refused):
			l.Skipped.Refused = append(l.Skipped.Refused, err.Error())
		case err != nil:
			l.Skipped.Unreadable = append(l.Skipped.Unreadable, err.Error())
		default:
			l.Files = append(l.Files, f.path)
		}
	}
	// Records stay in the order they were written (rotated parts oldest
	// first): a repeats record is stamped when it was reported, after
	// failures it may precede in causal order, so time is no sort key.
	return l
}

func (l *Log) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return l.readOpen(f)
}

// refusedError is a rotated sibling report does not trust.
type refusedError struct{ path, why string }

func (e refusedError) Error() string { return e.path + ": " + e.why }

// readSibling reads path, a rotated sibling of log, if it may be trusted
// (see ReadFiles): it is opened without following a symlink or waiting
// for a FIFO's writer, and checked on the file opened.
func (l *Log) readSibling(path, log string) error {
	owner := uint32(os.Geteuid()) // of a log that is not there (yet): whoever reads it
	var lst unix.Stat_t
	if err := unix.Stat(log, &lst); err == nil {
		owner = lst.Uid
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return refusedError{path, "a symbolic link"}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	why := ""
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		why = "not a regular file (" + fileKind(st.Mode) + ")"
	case st.Uid != owner && st.Uid != 0:
		why = fmt.Sprintf("owned by uid %d, not by the log's owner (uid %d) or root", st.Uid, owner)
	case st.Mode&0o002 != 0:
		why = "writable by every user"
	}
	if why != "" {
		f.Close()
		return refusedError{path, why}
	}
	return l.readOpen(f)
}

func fileKind(mode uint32) string {
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
	}
	return fmt.Sprintf("mode %#o", mode&unix.S_IFMT)
}

// readOpen reads an open file (gzip-compressed if its name ends in .gz)
// and closes it.
func (l *Log) readOpen(f *os.File) error {
	path := f.Name()
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				l.Skipped.Truncated++
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	l.read(r)
	return nil
}

// read decodes one stream of JSON lines. A last line without its newline
// that does not decode, or a compressed stream that ends early, counts as
// a truncated file.
func (l *Log) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		truncated := false
		if len(bytes.TrimSpace(line)) > 0 {
			rec, bad := Decode(line)
			switch {
			case rec != nil:
				l.Read++
				l.Last = maxTime(l.Last, events.TimeOf(rec))
				l.emit(rec)
			case err != nil && bad == badMalformed:
				truncated = true // the last line, cut off
				l.sniff(line)
			default:
				if bad == badMalformed {
					l.sniff(line)
				}
				l.count(bad)
			}
		}
		if err != nil {
			if truncated || !errors.Is(err, io.EOF) { // or the stream itself broke: a cut-off .gz
				l.Skipped.Truncated++
			}
			return
		}
	}
}

// readLine returns one line without its newline; err is non-nil when the
// line did not end with one (io.EOF, or why the stream broke). A line over
// maxLine is cut there (and then does not decode).
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= maxLine {
			line = append(line, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return line, err
		}
		return bytes.TrimSuffix(line, []byte("\n")), nil
	}
}

type badKind int

const (
	badNone badKind = iota
	badMalformed
	badNewer
	badIgnored // a valid record incidents do not use
)

func (l *Log) count(b badKind) {
	switch b {
	case badMalformed:
		l.Skipped.Malformed++
	case badNewer:
		l.Skipped.Newer++
		l.others++
	case badIgnored:
		l.others++
	}
}

// used are the record types incidents are built from (Builder.Add), and
// a session's start and stop; Decode ignores the others.
var used = map[string]bool{
	events.TypeFailure: true, events.TypeRepeats: true, events.TypeSignal: true, events.TypeReleased: true,
	events.TypeRecovered: true, events.TypePortFree: true, events.TypePortShared: true, events.TypeAbandoned: true,
	events.TypeUntracked: true, events.TypeSignalRepeats: true, events.TypeStart: true, events.TypeStop: true,
}

// Decode turns one JSON line into the record incidents are built from, or
// says why it is not one.
func Decode(line []byte) (events.Record, badKind) {
	var head struct {
		Type    string `json:"type"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(line, &head); err != nil || head.Type == "" || head.Version < 1 {
		return nil, badMalformed
	}
	if head.Version > events.Version {
		return nil, badNewer
	}
	if !used[head.Type] {
		return nil, badIgnored
	}
	rec := events.NewRecord(head.Type)
	if err := json.Unmarshal(line, rec); err != nil || events.TimeOf(rec).IsZero() {
		return nil, badMalformed
	}
	return rec, badNone
}
