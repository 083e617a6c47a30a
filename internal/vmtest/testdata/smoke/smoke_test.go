// Package smoke is vmtest's self-check: run in a guest (go run
// ./internal/vmtest -pkgs ./internal/vmtest/testdata/smoke), it proves the
// guest gives bindwatch's integration tests what they rely on. It lives under
// testdata so that `go test ./...` on the host leaves it alone.
package smoke

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestKernelBTF(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Fatalf("kernel BTF: %v (the kernel needs CONFIG_DEBUG_INFO_BTF=y)", err)
	}
}

func TestCgroup2(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		t.Fatalf("cgroup2 at /sys/fs/cgroup: %v (guest init mounts it)", err)
	}
}

func TestBackendEnv(t *testing.T) {
	switch backend := os.Getenv("BINDWATCH_TEST_BACKEND"); backend {
	case "fentry", "kprobe", "tracepoint":
	default:
		t.Fatalf("BINDWATCH_TEST_BACKEND=%q, want fentry, kprobe or tracepoint", backend)
	}
	if got := os.Getenv("BINDWATCH_REQUIRE_BPF"); got != "1" {
		t.Fatalf("BINDWATCH_REQUIRE_BPF=%q, want 1", got)
	}
}

// TestBindConflict binds on loopback, v4 and v6, and checks that a second
// bind of the same address fails the way bindwatch expects to observe.
func TestBindConflict(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen %s: %v (is lo up?)", addr, err)
			}
			defer ln.Close()
			second, err := net.Listen("tcp", ln.Addr().String())
			if err == nil {
				second.Close()
				t.Fatalf("second listen on %s succeeded, want EADDRINUSE", ln.Addr())
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("second listen on %s: %v, want EADDRINUSE", ln.Addr(), err)
			}
		})
	}
}

func TestShell(t *testing.T) {
	if out, err := exec.Command("sh", "-c", "echo ok").CombinedOutput(); err != nil || string(out) != "ok\n" {
		t.Fatalf("sh -c 'echo ok' = %q, %v (the initramfs carries busybox)", out, err)
	}
}
