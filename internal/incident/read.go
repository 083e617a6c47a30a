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

	"github.com/bindwatch/bindwatch/internal/events"
)

// maxLine bounds one record; longer lines are counted as malformed.
const maxLine = 1 << 20

// Log is what reading bindwatch's JSON lines back found: how many records
// incidents are built from, the time of the last, and what had to be
// skipped.
type Log struct {
	Read    int
	Last    time.Time
	Skipped Skipped
	emit    func(rec any)
}

// Files lists the files to read for the paths given: each path, preceded
// by its rotated siblings (PATH.N and PATH.N.gz, oldest — highest N —
// first), once each.
func Files(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range paths {
		for _, s := range rotated(p) {
			add(s)
		}
		add(p)
	}
	return out
}

// rotated lists PATH.N and PATH.N.gz (logrotate's names), oldest first.
func rotated(path string) []string {
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
func ReadFiles(paths []string, stdin io.Reader, emit func(rec any)) *Log {
	l := &Log{emit: emit}
	if len(paths) == 0 {
		l.read(stdin)
	}
	for _, p := range Files(paths) {
		if err := l.readFile(p); err != nil {
			l.Skipped.Unreadable = append(l.Skipped.Unreadable, err.Error())
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
				l.Last = maxTime(l.Last, recordTime(rec))
				l.emit(rec)
			case err != nil && bad == badMalformed:
				truncated = true // the last line, cut off
			default:
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
	}
}

// Decode turns one JSON line into the record incidents are built from, or
// says why it is not one.
func Decode(line []byte) (any, badKind) {
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
	var rec any
	switch head.Type {
	case events.TypeFailure:
		rec = &events.Failure{}
	case events.TypeRepeats:
		rec = &events.Repeats{}
	case events.TypeSignal:
		rec = &events.Signal{}
	case events.TypeReleased:
		rec = &events.Released{}
	case events.TypeRecovered:
		rec = &events.Recovered{}
	case events.TypePortFree:
		rec = &events.PortFree{}
	case events.TypeAbandoned:
		rec = &events.Abandoned{}
	case events.TypeStart:
		rec = &events.Start{}
	case events.TypeStop:
		rec = &events.Stop{}
	default:
		return nil, badIgnored
	}
	if err := json.Unmarshal(line, rec); err != nil || recordTime(rec).IsZero() {
		return nil, badMalformed
	}
	return rec, badNone
}

func recordTime(rec any) time.Time {
	switch r := rec.(type) {
	case *events.Failure:
		return r.Time
	case *events.Repeats:
		return r.Time
	case *events.Signal:
		return r.Time
	case *events.Released:
		return r.Time
	case *events.Recovered:
		return r.Time
	case *events.PortFree:
		return r.Time
	case *events.Abandoned:
		return r.Time
	case *events.Start:
		return r.Time
	case *events.Stop:
		return r.Time
	}
	return time.Time{}
}
