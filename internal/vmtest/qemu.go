package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Guest shape: one vCPU so that two guests share the host's two cores, and
// room for the initramfs (unpacked in RAM) plus the tests.
const (
	guestMemory = "1G"
	guestCPUs   = "1"
)

// kernelCmdline puts the console, with every kernel message, on the first
// serial port, and turns a panic (init exiting included) into a reboot,
// which -no-reboot turns into qemu exiting.
func kernelCmdline(arch guestArch) string { return "console=" + arch.console + " panic=-1" }

// qemuArgs boots vmlinuz with initrd under TCG (KVM is not usable on the CI
// machines), with the serial console on stdout and nothing else attached.
func qemuArgs(arch guestArch, vmlinuz, initrd string) []string {
	return append(slices.Clone(arch.machine),
		"-accel", "tcg", "-cpu", "max",
		"-m", guestMemory, "-smp", guestCPUs,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", kernelCmdline(arch),
	)
}

// boot runs k with initrd until the guest powers off, writing its serial
// console to logPath, and to live when not nil; it gives up after timeout.
func boot(ctx context.Context, arch guestArch, k kernel, initrd, logPath string, timeout time.Duration, live io.Writer) error {
	log, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("serial log: %w", err)
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, arch.qemu, qemuArgs(arch, k.vmlinuz(), initrd)...)
	cmd.Stdout = log
	if live != nil {
		cmd.Stdout = io.MultiWriter(log, live)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if stderr.Len() > 0 {
		fmt.Fprintf(log, "\n[vmtest] qemu stderr:\n%s", stderr.String())
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("guest still running after %s, killed (raise -timeout if the tests are just slow)", timeout)
	case err != nil:
		return fmt.Errorf("qemu: %w: %s", err, lastLines(stderr.String(), 5))
	}
	return log.Close()
}
