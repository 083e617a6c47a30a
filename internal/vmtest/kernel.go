package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// kernel is a fetched kernel, cached in dir: vmlinuz, config, kernel.json
// and the modules the guest loads.
type kernel struct {
	Series  string `json:"series"`
	Package string `json:"package"`
	Version string `json:"version"`
	dir     string
	modules []string // file names under dir/modules, in load order
}

// Release is the kernel's uname -r, as Debian names its image packages.
func (k kernel) Release() string { return strings.TrimPrefix(k.Package, "linux-image-") }

func (k kernel) vmlinuz() string { return filepath.Join(k.dir, "vmlinuz") }

func (k kernel) module(file string) string { return filepath.Join(k.dir, "modules", file) }

func (k kernel) String() string { return k.Package + " " + k.Version }

// requiredConfig must be built in (=y), with the architecture's own
// (guestArch.config): the guest has no modprobe, and loads only
// guestModules.
var requiredConfig = []string{
	"CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS",
	"CONFIG_INET", "CONFIG_IPV6", "CONFIG_CGROUPS",
	"CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_EVENTS",
	"CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS", "CONFIG_TRACEPOINTS",
	"CONFIG_FTRACE", "CONFIG_FUNCTION_TRACER",
}

// guestModules, in load order, are sock_diag for inet sockets, which
// bindwatch uses to find who holds an address, and veth, for the tests
// that give an interface a tentative IPv6 address. Debian builds them as
// modules that a real host loads on demand; the guest has no modprobe, so
// it loads them at boot. Each must be built in or a module.
var guestModules = []struct{ name, config string }{
	{"inet_diag", "CONFIG_INET_DIAG"},
	{"tcp_diag", "CONFIG_INET_TCP_DIAG"},
	{"udp_diag", "CONFIG_INET_UDP_DIAG"},
	{"raw_diag", "CONFIG_INET_RAW_DIAG"},
	{"veth", "CONFIG_VETH"},
}

// checkKernelDir checks that the kernel unpacked in dir can run the tests
// and returns the module files the guest must load, in order.
func checkKernelDir(dir string, arch guestArch) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		return nil, err
	}
	config := parseConfig(string(data))
	var missing, modules []string
	for _, name := range append(slices.Clone(requiredConfig), arch.config...) {
		if config[name] != "y" {
			missing = append(missing, name)
		}
	}
	for _, m := range guestModules {
		switch config[m.config] {
		case "y":
		case "m":
			file, err := findModule(dir, m.name)
			if err != nil {
				return nil, err
			}
			modules = append(modules, file)
		default:
			missing = append(missing, m.config)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("kernel config lacks %s (pick another kernel package)", strings.Join(missing, ", "))
	}
	return modules, nil
}

// parseConfig maps the options a kernel config sets to their values.
func parseConfig(config string) map[string]string {
	values := map[string]string{}
	for _, line := range strings.Split(config, "\n") {
		if name, value, ok := strings.Cut(strings.TrimSpace(line), "="); ok && strings.HasPrefix(name, "CONFIG_") {
			values[name] = value
		}
	}
	return values
}

// findModule returns the file name of module name, compressed or not, in
// dir/modules.
func findModule(dir, name string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "modules", name+".ko*"))
	if err != nil || len(files) != 1 {
		return "", fmt.Errorf("kernel package has %d files for module %s, want 1 (delete %s to fetch it again)", len(files), name, dir)
	}
	return filepath.Base(files[0]), nil
}

// extractKernel writes the package's /boot/vmlinuz-* and /boot/config-* to
// dst/vmlinuz and dst/config, and the guestModules it holds to dst/modules.
func extractKernel(ctx context.Context, deb, dst string) error {
	if err := os.MkdirAll(filepath.Join(dst, "modules"), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w (apt-get install dpkg)", err)
	}
	readErr := extractFromTar(pipe, dst)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, strings.TrimSpace(stderr.String()))
	}
	if readErr != nil {
		return fmt.Errorf("unpack %s: %w", deb, readErr)
	}
	for _, want := range []string{"vmlinuz", "config"} {
		if _, err := os.Stat(filepath.Join(dst, want)); err != nil {
			return fmt.Errorf("unpack %s: no /boot/%s-* in the package (is it a kernel image package?)", deb, want)
		}
	}
	return nil
}

func extractFromTar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if target := extractTarget(hdr.Name); target != "" {
			if err := writeFile(filepath.Join(dst, target), tr); err != nil {
				return err
			}
		}
	}
}

// extractTarget says where a file of a kernel package goes in the cache,
// relative to the kernel's directory, or "" if it is not needed.
func extractTarget(name string) string {
	dir, base := path.Split(path.Clean("/" + name))
	if dir == "/boot/" {
		if kind, _, _ := strings.Cut(base, "-"); kind == "vmlinuz" || kind == "config" {
			return kind
		}
		return ""
	}
	module, _, isModule := strings.Cut(base, ".ko")
	if !isModule || !strings.Contains(dir, "/modules/") {
		return ""
	}
	for _, m := range guestModules {
		if m.name == module {
			return filepath.Join("modules", base)
		}
	}
	return ""
}

func writeFile(name string, r io.Reader) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
