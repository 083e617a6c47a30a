package main

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// File type bits of a cpio mode, as in stat(2).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// cpioWriter writes a newc ("070701") cpio archive, the format the kernel
// unpacks as an initramfs. Parent directories are added on demand, because
// the kernel does not create them; everything is owned by root, with mtime 0.
type cpioWriter struct {
	w      *bufio.Writer
	offset int64
	ino    uint32
	dirs   map[string]bool
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriter(w), dirs: map[string]bool{".": true}}
}

// cpioEntry is one header's worth of metadata.
type cpioEntry struct {
	name      string
	mode      uint32
	size      int64
	rdevMajor uint32
	rdevMinor uint32
}

// Dir adds a directory (and its parents).
func (c *cpioWriter) Dir(name string, perm uint32) error {
	name = cleanName(name)
	if c.dirs[name] {
		return nil
	}
	if err := c.parents(name); err != nil {
		return err
	}
	c.dirs[name] = true
	return c.header(cpioEntry{name: name, mode: modeDir | perm})
}

// File adds a regular file of size bytes read from r.
func (c *cpioWriter) File(name string, perm uint32, size int64, r io.Reader) error {
	name = cleanName(name)
	if err := c.parents(name); err != nil {
		return err
	}
	if err := c.header(cpioEntry{name: name, mode: modeRegular | perm, size: size}); err != nil {
		return err
	}
	n, err := io.CopyN(c.w, r, size)
	c.offset += n
	if err != nil {
		return fmt.Errorf("cpio %s: copy %d of %d bytes: %w", name, n, size, err)
	}
	return c.pad()
}

// Symlink adds a symbolic link to target.
func (c *cpioWriter) Symlink(name, target string) error {
	name = cleanName(name)
	if err := c.parents(name); err != nil {
		return err
	}
	if err := c.header(cpioEntry{name: name, mode: modeSymlink | 0o777, size: int64(len(target))}); err != nil {
		return err
	}
	return c.write([]byte(target))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	name = cleanName(name)
	if err := c.parents(name); err != nil {
		return err
	}
	return c.header(cpioEntry{name: name, mode: modeCharDev | perm, rdevMajor: major, rdevMinor: minor})
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (c *cpioWriter) Close() error {
	if err := c.header(cpioEntry{name: "TRAILER!!!"}); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *cpioWriter) parents(name string) error {
	if dir := path.Dir(name); !c.dirs[dir] {
		return c.Dir(dir, 0o755)
	}
	return nil
}

func (c *cpioWriter) header(e cpioEntry) error {
	c.ino++
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
	// rdevminor namesize check. nlink stays 1: the kernel treats regular
	// files with more links as hard links to an earlier entry. namesize
	// counts the terminating NUL.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, e.mode, 0, 0, 1, 0, e.size, 0, 0, e.rdevMajor, e.rdevMinor, len(e.name)+1, 0)
	return c.write([]byte(hdr + e.name + "\x00"))
}

// write writes b and pads to the 4-byte boundary newc requires after a
// header+name and after file data.
func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.offset += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return c.pad()
}

func (c *cpioWriter) pad() error {
	n, err := c.w.Write(make([]byte, (4-c.offset%4)%4))
	c.offset += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return nil
}

// cleanName turns "/a/b/" into "a/b" and "/" into ".": archive paths are
// relative to the root.
func cleanName(name string) string {
	if name = strings.TrimPrefix(path.Clean("/"+name), "/"); name == "" {
		return "."
	}
	return name
}
