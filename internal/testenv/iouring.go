package testenv

import (
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// ErrNoIOUringBind and ErrIOUringRefused are host's (IOUringDo).
var (
	ErrNoIOUringBind  = host.ErrNoIOUringBind
	ErrIOUringRefused = host.ErrIOUringRefused
)

// IOUringBind binds fd to addr:port with one IORING_OP_BIND request — a
// bind() that never passes through the bind syscall — and returns its
// result: nil, an errno, ErrNoIOUringBind or ErrIOUringRefused.
func IOUringBind(fd int, addr string, port int) error {
	sa, salen := rawSockaddr(addr, port)
	err := host.IOUringDo(host.IOUringSQE{Opcode: host.IOUringOpBind, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(&sa[0]))), Addr2: uint64(salen)})
	runtime.KeepAlive(sa)
	return err
}

// IOUringListen makes fd listen with one IORING_OP_LISTEN request — a
// listen() that never passes through the listen syscall — and returns its
// result as IOUringBind does.
func IOUringListen(fd int) error {
	return host.IOUringDo(host.IOUringSQE{Opcode: host.IOUringOpListen, Fd: int32(fd), Len: 64})
}

// IOUringDisabledSysctl is where kernel.io_uring_disabled lives (6.6+).
const IOUringDisabledSysctl = "/proc/sys/kernel/io_uring_disabled"

// AllowIOUring sets kernel.io_uring_disabled to 0 until the test ends (a
// host-wide sysctl: it is restored in Cleanup). It fails the test if the
// sysctl cannot be written; it does nothing where the sysctl is already 0.
func AllowIOUring(t testing.TB) {
	t.Helper()
	old, err := os.ReadFile(IOUringDisabledSysctl)
	if err != nil {
		t.Fatalf("io_uring_setup said EPERM but %s cannot be read: %v", IOUringDisabledSysctl, err)
	}
	if strings.TrimSpace(string(old)) == "0" {
		return
	}
	if err := os.WriteFile(IOUringDisabledSysctl, []byte("0"), 0); err != nil {
		t.Fatalf("io_uring is disabled (kernel.io_uring_disabled=%s) and cannot be enabled for this test: %v", strings.TrimSpace(string(old)), err)
	}
	t.Logf("kernel.io_uring_disabled was %s: set to 0 for this test", strings.TrimSpace(string(old)))
	t.Cleanup(func() {
		if err := os.WriteFile(IOUringDisabledSysctl, old, 0); err != nil {
			t.Errorf("restore kernel.io_uring_disabled=%s: %v", strings.TrimSpace(string(old)), err)
		}
	})
}

// KernelAtLeast says whether the running kernel's release is at least
// major.minor.
func KernelAtLeast(t testing.TB, major, minor int) bool {
	t.Helper()
	ok, err := host.ReleaseIsAtLeast(host.KernelRelease(), major, minor)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// rawSockaddr is struct sockaddr_in/in6 for addr:port, and its length.
func rawSockaddr(addr string, port int) ([]byte, int) {
	a := netip.MustParseAddr(addr)
	if a.Is6() {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		sa.Port = uint16(port>>8) | uint16(port&0xff)<<8
		return unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)), int(unsafe.Sizeof(sa))
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	sa.Port = uint16(port>>8) | uint16(port&0xff)<<8
	return unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)), int(unsafe.Sizeof(sa))
}
