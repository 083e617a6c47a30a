package main

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// hostTools are the programs the harness needs beyond Go and apt, with the
// Debian packages that provide them: the guests' emulator, and a static
// busybox (the initramfs has no libc; for another architecture's guests,
// the host's lists the applets).
func hostTools(arch guestArch) []struct{ bin, pkg string } {
	return []struct{ bin, pkg string }{{arch.qemu, arch.qemuPkg}, {"busybox", "busybox-static"}}
}

// ensureTools installs the missing host tools with apt-get and returns the
// path of the host's static busybox.
func ensureTools(ctx context.Context, arch guestArch, log io.Writer) (busybox string, err error) {
	missing := missingTools(arch)
	if len(missing) > 0 {
		if err := aptInstall(ctx, log, missing); err != nil {
			return "", err
		}
		if still := missingTools(arch); len(still) > 0 {
			return "", fmt.Errorf("apt-get installed %s, but they are still unusable (need %s and a static busybox on PATH)", strings.Join(still, " "), arch.qemu)
		}
	}
	return exec.LookPath("busybox")
}

func missingTools(arch guestArch) []string {
	var missing []string
	for _, t := range hostTools(arch) {
		path, err := exec.LookPath(t.bin)
		if err != nil || (t.bin == "busybox" && !isStatic(path)) {
			missing = append(missing, t.pkg)
		}
	}
	return missing
}

// isStatic reports whether the ELF binary at path needs no program
// interpreter, i.e. no dynamic loader.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func aptInstall(ctx context.Context, log io.Writer, pkgs []string) error {
	hint := "apt-get install " + strings.Join(pkgs, " ")
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing %s and not root (run as root, or %s)", strings.Join(pkgs, ", "), hint)
	}
	fmt.Fprintf(log, "vmtest: installing %s\n", strings.Join(pkgs, " "))
	update := exec.CommandContext(ctx, "apt-get", "-q", "update")
	if _, err := output(update); err != nil {
		return fmt.Errorf("install host tools: %w (try: %s)", err, hint)
	}
	install := exec.CommandContext(ctx, "apt-get", append([]string{"-q", "-y", "--no-install-recommends", "install"}, pkgs...)...)
	install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if _, err := output(install); err != nil {
		return fmt.Errorf("install host tools: %w (try: %s)", err, hint)
	}
	return nil
}

// output runs cmd and returns its stdout; a failure carries the command
// line and the tail of its stderr.
func output(cmd *exec.Cmd) ([]byte, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", commandLine(cmd.Args), err, lastLines(stderr.String(), 20))
	}
	return out, nil
}

// commandLine shows args for a message, without apt's "-o name=value"
// overrides, which are noise there.
func commandLine(args []string) string {
	var shown []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" {
			i++
			continue
		}
		shown = append(shown, args[i])
	}
	return strings.Join(shown, " ")
}

// lastLines returns the last n lines of s, without trailing space.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n\r\t "), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
