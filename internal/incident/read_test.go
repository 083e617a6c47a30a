package incident

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Rotated parts are read oldest first — the highest number, compared as a
// number, not as text — and the log itself last, so records stay in the
// order they were written.
func TestReadFilesOldestFirst(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "bindwatch.log")
	for _, name := range []string{"bindwatch.log", "bindwatch.log.1", "bindwatch.log.10", "bindwatch.log.x", "bindwatch.log.0"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gz, err := os.Create(filepath.Join(dir, "bindwatch.log.2.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gzip.NewWriter(gz).Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{log + ".10", log + ".2.gz", log + ".1"}
	if got := Rotated(log); !slices.Equal(got, want) {
		t.Errorf("Rotated = %q, want %q (oldest first, by number)", got, want)
	}
	l := ReadFiles([]string{log}, nil, func(events.Record) {})
	if want := append(want, log); !slices.Equal(l.Files, want) {
		t.Errorf("read %q, want %q; skipped %+v", l.Files, want, l.Skipped)
	}
}
