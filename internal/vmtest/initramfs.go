package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
)

// Where the tests live in the guest.
const (
	guestBinDir = "/vmtest/bin" // test binaries
	// guestSrcDir mirrors the module: each package's working directory,
	// with its testdata, at its path in the module, and the module's docs
	// (the schema test reads ../../docs/schema.json).
	guestSrcDir = "/vmtest/src"
)

// guestEtc is the least /etc that name resolution and os/user need.
var guestEtc = map[string]string{
	"/etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
	"/etc/group":  "root:x:0:\n",
}

// newPlan tells the guest to load each kernel's modules and run every
// package's tests once per backend.
func newPlan(pkgs []testPackage, kernels []kernel, backends, args []string) protocol.Plan {
	plan := protocol.Plan{Backends: backends, Args: args, Modules: map[string][]string{}}
	for _, k := range kernels {
		plan.Modules[k.Release()] = k.modules
	}
	for _, p := range pkgs {
		t := protocol.Test{
			Name:   p.label(),
			Binary: path.Join(guestBinDir, p.fileName()+".test"),
			Dir:    path.Join(guestSrcDir, p.name),
			Run:    p.run,
			Skip:   p.skip,
		}
		if p.once {
			t.Backends = backends[:1]
		}
		plan.Tests = append(plan.Tests, t)
	}
	return plan
}

// initramfs is everything that goes into the guest's root filesystem.
type initramfs struct {
	init      string // host path of the guest init
	bindwatch string // host path of the bindwatch command built for the guest
	docs      string // host path of the module's docs directory
	busybox   string // host path of a static busybox for the guest
	applets   string // host path of a busybox to run for the applet list
	pkgs      []testPackage
	kernels   []kernel
	plan      protocol.Plan // from newPlan: plan.Tests[i] is pkgs[i]
}

// write builds the newc archive at name.
func (r initramfs) write(ctx context.Context, name string) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	c := newCPIOWriter(f)
	steps := []func(*cpioWriter) error{
		r.writeSkeleton,
		func(c *cpioWriter) error { return r.writeBusybox(ctx, c) },
		r.writeTests,
		r.writeModules,
		r.writeConfigs,
		r.writePlan,
		func(c *cpioWriter) error { return addHostFile(c, "/init", r.init, 0o755) },
	}
	for _, step := range steps {
		if err := step(c); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return f.Close()
}

func (r initramfs) writeSkeleton(c *cpioWriter) error {
	for _, d := range []struct {
		name string
		perm uint32
	}{{"/dev", 0o755}, {"/proc", 0o555}, {"/sys", 0o555}, {"/tmp", 0o1777}, {"/root", 0o700}} {
		if err := c.Dir(d.name, d.perm); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's stdio before devtmpfs is up.
	if err := c.CharDev("/dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	for name, content := range guestEtc {
		if err := c.File(name, 0o644, int64(len(content)), strings.NewReader(content)); err != nil {
			return err
		}
	}
	return nil
}

// writeBusybox installs busybox as /bin with every applet, and makes
// /sbin, /usr/bin and /usr/sbin point there, so tests can shell out.
func (r initramfs) writeBusybox(ctx context.Context, c *cpioWriter) error {
	out, err := output(exec.CommandContext(ctx, r.applets, "--list"))
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	if err := addHostFile(c, "/bin/busybox", r.busybox, 0o755); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" { // Debian's busybox lists itself
			continue
		}
		if err := c.Symlink("/bin/"+applet, "busybox"); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"/sbin": "bin", "/usr/bin": "../bin", "/usr/sbin": "../bin"} {
		if err := c.Symlink(name, target); err != nil {
			return err
		}
	}
	return nil
}

func (r initramfs) writeTests(c *cpioWriter) error {
	if err := addHostFile(c, protocol.BindwatchPath, r.bindwatch, 0o755); err != nil {
		return err
	}
	if err := addTree(c, r.docs, path.Join(guestSrcDir, "docs")); err != nil {
		return err
	}
	for i, p := range r.pkgs {
		test := r.plan.Tests[i]
		if err := addHostFile(c, test.Binary, p.binary, 0o755); err != nil {
			return err
		}
		if err := c.Dir(test.Dir, 0o755); err != nil {
			return err
		}
		if err := addTree(c, filepath.Join(p.dir, "testdata"), path.Join(test.Dir, "testdata")); err != nil {
			return err
		}
	}
	return nil
}

// writeModules puts every kernel's modules where the plan says.
func (r initramfs) writeModules(c *cpioWriter) error {
	for _, k := range r.kernels {
		for _, file := range k.modules {
			if err := addHostFile(c, path.Join(protocol.ModuleDir(k.Release()), file), k.module(file), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeConfigs puts every kernel's build configuration where Debian
// installs it, /boot/config-RELEASE: the tracer reads the tick rate there
// (host.KernelHZ), as it does on an installed system.
func (r initramfs) writeConfigs(c *cpioWriter) error {
	for _, k := range r.kernels {
		if err := addHostFile(c, "/boot/config-"+k.Release(), filepath.Join(k.dir, "config"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r initramfs) writePlan(c *cpioWriter) error {
	data, err := json.Marshal(r.plan)
	if err != nil {
		return err
	}
	return c.File(protocol.PlanPath, 0o644, int64(len(data)), strings.NewReader(string(data)))
}

// addTree copies the host directory src, if it exists, to dst: directories,
// regular files and symlinks.
func addTree(c *cpioWriter, src, dst string) error {
	if _, err := os.Stat(src); os.IsNotExist(err) {
		return nil
	}
	return filepath.WalkDir(src, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, name)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return c.Dir(target, uint32(info.Mode().Perm()))
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(name)
			if err != nil {
				return err
			}
			return c.Symlink(target, link)
		case d.Type().IsRegular():
			return addHostFile(c, target, name, uint32(info.Mode().Perm()))
		}
		return nil
	})
}

func addHostFile(c *cpioWriter, name, hostPath string, perm uint32) error {
	f, err := os.Open(hostPath)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	return c.File(name, perm, info.Size(), f)
}
