package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// guestArch is what differs between the architectures the guests run:
// the kernel packages, the emulator, the console, and the kernel options
// the tests need there.
type guestArch struct {
	name    string   // GOARCH and Debian architecture: amd64, arm64
	qemu    string   // the emulator
	qemuPkg string   // the Debian package that has it
	machine []string // qemu's machine options
	console string   // the serial console device, for the kernel command line
	// config must be built in beside requiredConfig: the serial console,
	// and what the default backends need.
	config []string
	// backends are the ones the kernels of this architecture support,
	// the default of -backends.
	backends string
}

// hostArch is the architecture the harness (and every Go test binary not
// built for a guest) runs on.
const hostArch = "amd64"

var guestArches = map[string]guestArch{
	"amd64": {
		name: "amd64", qemu: "qemu-system-x86_64", qemuPkg: "qemu-system-x86", console: "ttyS0",
		config:   []string{"CONFIG_SERIAL_8250_CONSOLE", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"},
		backends: "fentry,kprobe,tracepoint",
	},
	// Debian's arm64 kernels boot on qemu's virt board (PL011 serial). 6.1
	// has no fentry on arm64 (no BPF trampoline without
	// DYNAMIC_FTRACE_WITH_DIRECT_CALLS there), so its default backends are
	// kprobe and tracepoint.
	"arm64": {
		name: "arm64", qemu: "qemu-system-aarch64", qemuPkg: "qemu-system-arm", machine: []string{"-M", "virt"}, console: "ttyAMA0",
		config:   []string{"CONFIG_SERIAL_AMBA_PL011_CONSOLE"},
		backends: "kprobe,tracepoint",
	},
}

func lookupArch(name string) (guestArch, error) {
	if a, ok := guestArches[name]; ok {
		return a, nil
	}
	var known []string
	for n := range guestArches {
		known = append(known, n)
	}
	sort.Strings(known)
	return guestArch{}, fmt.Errorf("unknown -arch %q (known: %s)", name, strings.Join(known, ", "))
}

// guestBusybox returns a static busybox the guest can run: the host's for
// the host's architecture, else Debian's busybox-static of the guest's
// architecture, fetched once into the cache.
func (f *fetcher) guestBusybox(ctx context.Context, hostBusybox string) (string, error) {
	if f.arch.name == hostArch {
		return hostBusybox, nil
	}
	const release = "bookworm"
	bin := filepath.Join(f.cache, "tools", "busybox")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	idx := f.index(release)
	if err := f.update(ctx, idx, release); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(f.cache, "busybox-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	deb, err := idx.download(ctx, "busybox-static", "", tmp)
	if err != nil {
		return "", fmt.Errorf("fetch busybox-static for %s: %w", f.arch.name, err)
	}
	if _, err := output(exec.CommandContext(ctx, "dpkg-deb", "-x", deb, filepath.Join(tmp, "root"))); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	return bin, os.Rename(filepath.Join(tmp, "root", "bin", "busybox"), bin)
}
