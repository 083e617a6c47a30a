package sink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

func failure(i int) *events.Failure {
	return &events.Failure{
		Header:  events.Header{Type: events.TypeFailure, Version: events.Version, Time: time.Now(), Host: "h"},
		Syscall: "bind", Errno: "EADDRINUSE", ErrnoCode: 98, Proto: "tcp", Family: "ipv4",
		Addr: "127.0.0.1", Port: uint16(i % 65536),
		Process: events.Process{PID: i, Comm: "storm", Cmdline: []string{"storm", strings.Repeat("x", 200)}},
	}
}

// records reads a JSON-lines file, failing the test on any line that is
// not one whole JSON object.
func records(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s does not end in a newline: its last line is cut: %q", path, b[max(0, len(b)-80):])
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: a line is not a whole record: %v: %q", path, err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func num(m map[string]any, k string) uint64 {
	f, _ := m[k].(float64)
	return uint64(f)
}

// sharedDir is a sticky world-writable directory like /tmp.
func sharedDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A symlink planted where --output will be, in a sticky world-writable
// directory, is refused with a clear error and its target is untouched —
// whether the target exists or not.
func TestFileRefusesPlantedSymlink(t *testing.T) {
	dir := sharedDir(t)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	for _, target := range []string{victim, filepath.Join(dir, "dangling-target")} {
		link := filepath.Join(dir, "out.jsonl")
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		f, err := OpenFile(link, FileOptions{})
		if err == nil {
			f.Write(failure(1))
			f.Close()
			t.Fatalf("OpenFile followed a planted symlink to %s", target)
		}
		if !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), "hint:") {
			t.Errorf("error %q does not say it is a symlink, with a hint", err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dangling-target")); err == nil {
		t.Error("a dangling symlink's target was created")
	}
}

// An existing output file others can write is tightened when it is ours
// (one sentence says so) and refused when it is someone else's; a file
// with another hard link is refused.
func TestFileModeAndLinks(t *testing.T) {
	testenv.RequireRoot(t) // to own a file as another user
	dir := sharedDir(t)
	ours := filepath.Join(dir, "ours")
	os.WriteFile(ours, nil, 0o666)
	os.Chmod(ours, 0o666)
	var warn bytes.Buffer
	f, err := OpenFile(ours, FileOptions{Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(ours); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want it tightened to 0644", st.Mode().Perm())
	}
	if !strings.Contains(warn.String(), "made it 0644") || strings.Count(warn.String(), "\n") != 1 {
		t.Errorf("tightening said %q, want one sentence", warn.String())
	}

	theirs := filepath.Join(dir, "theirs")
	os.WriteFile(theirs, nil, 0o666)
	os.Chmod(theirs, 0o666)
	os.Chown(theirs, 65534, 65534)
	if f, err := OpenFile(theirs, FileOptions{}); err == nil || !strings.Contains(err.Error(), "uid 65534 owns") {
		t.Errorf("someone else's world-writable file: err %v, want refused", err)
		if f != nil {
			f.Close()
		}
	}
	// Group-writable is enough: the group's members could forge records.
	groupW := filepath.Join(dir, "theirs-group")
	os.WriteFile(groupW, nil, 0o664)
	os.Chmod(groupW, 0o664)
	os.Chown(groupW, 65534, 65534)
	if f, err := OpenFile(groupW, FileOptions{}); err == nil || !strings.Contains(err.Error(), "uid 65534 owns") || !strings.Contains(err.Error(), "mode 0664") {
		t.Errorf("someone else's group-writable file: err %v, want refused", err)
		if f != nil {
			f.Close()
		}
	}

	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	linked := filepath.Join(dir, "linked")
	if err := os.Link(victim, linked); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenFile(linked, FileOptions{}); err == nil || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("hard-linked file: err %v, want refused", err)
		if f != nil {
			f.Close()
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the hard link's other name was written: %q", b)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// On a full filesystem no write leaves half a record, tracing (Write)
// goes on, the records that could not be written are counted exactly,
// and once space returns the count is in the file, before the next
// record, and in the stop record.
func TestFileFullDisk(t *testing.T) {
	dir := mountTmpfs(t, 256<<10)
	filler := filepath.Join(dir, "filler")
	// Leave about 40 KiB: a few dozen records.
	if err := os.WriteFile(filler, make([]byte, 216<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "out.jsonl")
	var warn bytes.Buffer
	f, err := OpenFile(path, FileOptions{Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 400
	for i := range n {
		if err := f.Write(failure(i)); err != nil {
			t.Fatalf("Write failed on a full disk (it must count instead): %v", err)
		}
	}
	st := f.Stats()
	if st.Dropped == 0 || st.Dropped >= n {
		t.Fatalf("%d of %d records dropped: the filesystem did not fill as planned", st.Dropped, n)
	}
	written := records(t, path) // every line whole while full
	if len(written)+int(st.Dropped) != n {
		t.Errorf("%d written + %d dropped != %d", len(written), st.Dropped, n)
	}
	if got := strings.Count(warn.String(), "no space left on device"); got != 1 {
		t.Errorf("standard error during the outage: %q, want one line naming the error", warn.String())
	}
	f.Write(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: events.Version}, Failures: 7})
	if !strings.Contains(warn.String(), "the stop record could not be written") {
		t.Errorf("a stop record lost to a full disk is not said on standard error: %q", warn.String())
	}
	os.Remove(filler)
	f.Write(failure(n))
	f.Write(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: events.Version}, Failures: n + 1})
	recs := records(t, path)
	var failures, lostFailures, lostRecords uint64
	var stop map[string]any
	for _, r := range recs {
		switch r["type"] {
		case events.TypeFailure:
			failures++
		case events.TypeOutputLost:
			if r["output"] != "file" || r["error"] != "no space left on device" {
				t.Errorf("output_lost record %v", r)
			}
			lostRecords += num(r, "records")
			lostFailures += num(r, "failures")
		case events.TypeStop:
			stop = r
		}
	}
	if lostRecords != st.Dropped+1 || lostFailures != st.Dropped {
		t.Errorf("output_lost says %d records, %d failures; %d failures and a stop record were dropped", lostRecords, lostFailures, st.Dropped)
	}
	if failures+lostFailures != n+1 {
		t.Errorf("%d failures written + %d lost != %d", failures, lostFailures, n+1)
	}
	if stop == nil || num(stop, "output_lost") != st.Dropped+1 || num(stop, "output_lost_failures") != st.Dropped {
		t.Errorf("stop record %v, want output_lost %d", stop, st.Dropped)
	}
	if !strings.Contains(warn.String(), "works again") {
		t.Errorf("no word on standard error that writing resumed: %q", warn.String())
	}
}

// A stream whose reader has gone (EPIPE) counts what it cannot write
// instead of stopping anything.
func TestStreamReaderGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	var warn bytes.Buffer
	s := NewStream(w, "stdout", FileOptions{Warn: &warn})
	for i := range 3 {
		if err := s.Write(failure(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Dropped != 3 || st.Output != "stdout" {
		t.Errorf("stats %+v, want 3 dropped on stdout", st)
	}
	if !strings.Contains(warn.String(), "broken pipe") || !strings.Contains(warn.String(), "standard output") {
		t.Errorf("warning %q", warn.String())
	}
}

// Rotation by size keeps MaxFiles rotated files of whole lines, in order,
// and moves a symlink planted at a rotated name instead of writing through
// it.
func TestFileRotation(t *testing.T) {
	dir := sharedDir(t)
	path := filepath.Join(dir, "out.jsonl")
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	os.Symlink(victim, path+".1")
	f, err := OpenFile(path, FileOptions{MaxSize: 8 << 10, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		f.Write(failure(i))
	}
	f.Close()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("rotation wrote through a planted symlink: %q", b)
	}
	var pids []int
	for _, name := range []string{path + ".3", path + ".2", path + ".1", path} {
		st, err := os.Lstat(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Mode()&os.ModeSymlink != 0 {
			continue // the planted link, moved along
		}
		if st.Size() > 8<<10 {
			t.Errorf("%s has %d bytes, over --output-max-size", name, st.Size())
		}
		for _, r := range records(t, name) {
			pids = append(pids, int(r["process"].(map[string]any)["pid"].(float64)))
		}
	}
	if _, err := os.Lstat(path + ".4"); err == nil {
		t.Error("more than MaxFiles rotated files kept")
	}
	if len(pids) == 0 || pids[len(pids)-1] != n-1 {
		t.Fatalf("the newest record is not last: %v", pids)
	}
	for i := 1; i < len(pids); i++ {
		if pids[i] != pids[i-1]+1 {
			t.Fatalf("records out of order or missing across rotated files: %d after %d", pids[i], pids[i-1])
		}
	}
}

// Reopen (SIGHUP) after the file was moved away writes to a new file at
// the path; the moved file keeps whole lines.
func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(failure(1))
	os.Rename(path, path+".1")
	f.Write(failure(2))
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write(failure(3))
	if a, b := len(records(t, path+".1")), len(records(t, path)); a != 2 || b != 1 {
		t.Errorf("%d records in the moved file, %d in the new one; want 2 and 1", a, b)
	}
	// A symlink planted at the path before the reopen is refused; writing
	// goes on to the open file.
	os.Rename(path, path+".2")
	victim := filepath.Join(t.TempDir(), "victim")
	os.Symlink(victim, path)
	if err := f.Reopen(); err == nil {
		t.Error("Reopen followed a symlink")
	}
	f.Write(failure(4))
	if n := len(records(t, path+".2")); n != 2 {
		t.Errorf("%d records in the file kept after a refused reopen, want 2", n)
	}
	if _, err := os.Stat(victim); err == nil {
		t.Error("the symlink's target was created")
	}
}

// With Compress, rotated files are gzipped (FILE.N.gz) and hold whole
// lines, in order, with none missing; a symlink planted at the
// temporary name of a gzip is removed, not written through.
func TestFileRotationCompressed(t *testing.T) {
	dir := sharedDir(t)
	path := filepath.Join(dir, "out.jsonl")
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	os.Symlink(victim, path+".1.gz.tmp")
	f, err := OpenFile(path, FileOptions{MaxSize: 8 << 10, MaxFiles: 50, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		f.Write(failure(i))
	}
	f.Close()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("compression wrote through a planted symlink: %q", b)
	}
	var pids []int
	for i := 50; i >= 1; i-- {
		name := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(name); err == nil {
			t.Errorf("%s left uncompressed", name)
		}
		zf, err := os.Open(name + ".gz")
		if err != nil {
			continue
		}
		zr, err := gzip.NewReader(zf)
		if err != nil {
			t.Fatalf("%s.gz: %v", name, err)
		}
		plain := filepath.Join(t.TempDir(), "plain")
		b, err := io.ReadAll(zr)
		zf.Close()
		if err != nil {
			t.Fatalf("%s.gz: %v", name, err)
		}
		os.WriteFile(plain, b, 0o600)
		for _, r := range records(t, plain) {
			pids = append(pids, int(r["process"].(map[string]any)["pid"].(float64)))
		}
	}
	for _, r := range records(t, path) {
		pids = append(pids, int(r["process"].(map[string]any)["pid"].(float64)))
	}
	if len(pids) != n {
		t.Fatalf("%d records across the files, want %d", len(pids), n)
	}
	for i, pid := range pids {
		if pid != i {
			t.Fatalf("record %d is pid %d: out of order or missing", i, pid)
		}
	}
	if _, err := os.Lstat(path + ".1.gz.tmp"); err == nil {
		t.Error("a temporary file is left behind")
	}
}
