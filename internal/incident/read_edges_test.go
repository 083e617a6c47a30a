package incident

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// writeLog writes lines, each ending in a newline, to a log file.
func writeLog(t *testing.T, lines ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bindwatch.log")
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// recordOf is f's JSON line with its comm padded so that the line is size
// bytes long.
func recordOf(t *testing.T, f *events.Failure, size int) []byte {
	t.Helper()
	f.Process.Comm = ""
	b, err := events.MarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Process.Comm = strings.Repeat("c", size-len(b))
	if b, err = events.MarshalJSON(f); err != nil || len(b) != size {
		t.Fatalf("record of %d bytes (%v), want %d", len(b), err, size)
	}
	return b
}

// Blank and whitespace-only lines are nothing: not records, not
// malformed.
func TestReadSkipsBlankLines(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	rec := recordOf(t, failure(t0, 80, 7), 1000)
	path := writeLog(t, rec, nil, []byte("   \t"), rec)
	n := 0
	l := ReadFiles([]string{path}, nil, func(events.Record) { n++ })
	if l.Read != 2 || n != 2 || l.Skipped.Any() {
		t.Errorf("read %d (emitted %d), skipped %+v; want 2 records and nothing skipped", l.Read, n, l.Skipped)
	}
}

// A record of events.MaxRecordBytes is read; a line one byte longer is
// cut and counted malformed, and the next line is read as usual.
func TestReadRecordSizeLimit(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	max := recordOf(t, failure(t0, 80, 7), events.MaxRecordBytes)
	over := recordOf(t, failure(t0, 80, 7), events.MaxRecordBytes+1)
	small := recordOf(t, failure(t0, 80, 7), 1000)
	l := ReadFiles([]string{writeLog(t, max, over, small)}, nil, func(events.Record) {})
	if l.Read != 2 || l.Skipped.Malformed != 1 || l.Skipped.Truncated != 0 {
		t.Errorf("read %d, skipped %+v; want the record at the limit and the small one, the longer line malformed", l.Read, l.Skipped)
	}
}
