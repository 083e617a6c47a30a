package main

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// newcEntry is one parsed newc record.
type newcEntry struct {
	name  string
	mode  uint32
	rdev  [2]uint32
	nlink uint32
	data  string
}

// readNewc parses a newc archive up to its trailer, checking magic and
// alignment as the kernel does.
func readNewc(t *testing.T, archive []byte) []newcEntry {
	t.Helper()
	var entries []newcEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at offset %d is not 4-byte aligned", off)
		}
		hdr := string(archive[off : off+110])
		if !strings.HasPrefix(hdr, "070701") {
			t.Fatalf("bad magic %q at offset %d", hdr[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(hdr[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("header field %d at offset %d: %v", i, off, err)
			}
			return uint32(v)
		}
		size, nameSize := int(field(6)), int(field(11))
		name := string(archive[off+110 : off+110+nameSize])
		if !strings.HasSuffix(name, "\x00") {
			t.Fatalf("name %q is not NUL-terminated", name)
		}
		name = strings.TrimSuffix(name, "\x00")
		off = align4(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			if off != len(archive) {
				t.Fatalf("%d bytes after the trailer", len(archive)-off)
			}
			return entries
		}
		entries = append(entries, newcEntry{
			name: name, mode: field(1), nlink: field(4), rdev: [2]uint32{field(9), field(10)},
			data: string(archive[off : off+size]),
		})
		off = align4(off + size)
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	steps := []error{
		c.Dir("/tmp", 0o1777),
		c.CharDev("/dev/console", 0o600, 5, 1),
		c.File("/a/b/c.txt", 0o644, 5, strings.NewReader("hello")),
		c.Symlink("/bin/sh", "busybox"),
		c.File("/init", 0o755, 0, strings.NewReader("")),
		c.Dir("/a/b", 0o700), // already there: not repeated
		c.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []newcEntry{
		{name: "tmp", mode: modeDir | 0o1777},
		{name: "dev", mode: modeDir | 0o755},
		{name: "dev/console", mode: modeCharDev | 0o600, rdev: [2]uint32{5, 1}},
		{name: "a", mode: modeDir | 0o755},
		{name: "a/b", mode: modeDir | 0o755},
		{name: "a/b/c.txt", mode: modeRegular | 0o644, data: "hello"},
		{name: "bin", mode: modeDir | 0o755},
		{name: "bin/sh", mode: modeSymlink | 0o777, data: "busybox"},
		{name: "init", mode: modeRegular | 0o755},
	}
	got := readNewc(t, buf.Bytes())
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		want[i].nlink = 1
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCPIOWriterShortFile(t *testing.T) {
	c := newCPIOWriter(io.Discard)
	err := c.File("x", 0o644, 10, strings.NewReader("short"))
	if err == nil || !strings.Contains(err.Error(), "5 of 10 bytes") {
		t.Errorf("File with a short reader = %v, want an error about 5 of 10 bytes", err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"/a/b/": "a/b", "a//b": "a/b", "/": ".", "": ".", "/x/../y": "y"} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
