package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring uapi (include/uapi/linux/io_uring.h) that IOUringBind uses.
// x/sys/unix has the syscall numbers but not the ring layout.
const (
	ioringOpBind          = 56 // IORING_OP_BIND, 6.11+
	ioringOffSQRing       = 0
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	ioringEnterGetEvents  = 1
	ioringRegisterProbe   = 8
	ioUringOpSupported    = 1
	ioringFeatSingleMmap  = 1
	ioUringProbeMaxOps    = 256
	sqeSize, cqeSize      = 64, 16
	sysIOUringRegisterNum = 427
)

type ioSQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  ioSQRingOffsets
	CQOff                                                                  ioCQRingOffsets
}

type ioUringSQE struct {
	Opcode   uint8
	Flags    uint8
	Ioprio   uint16
	Fd       int32
	Addr2    uint64 // off/addr2: IORING_OP_BIND's address length
	Addr     uint64
	Len      uint32
	OpFlags  uint32
	UserData uint64
	_        [24]byte
}

// ErrNoIOUringBind says this kernel has no IORING_OP_BIND: io_uring is
// not built in (ENOSYS), or predates the op (Linux 6.11).
var ErrNoIOUringBind = errors.New("this kernel has no io_uring IORING_OP_BIND (Linux 6.11+ with CONFIG_IO_URING)")

// ErrIOUringRefused says io_uring exists but this process may not use it:
// io_uring_setup failed with EPERM, as kernel.io_uring_disabled (6.6+)
// makes it (1: only root and io_uring_group; 2: nobody).
var ErrIOUringRefused = errors.New("io_uring_setup refused with EPERM (kernel.io_uring_disabled)")

// IOUringBind binds fd to addr:port with one IORING_OP_BIND request — a
// bind() that never passes through the bind syscall — and returns its
// result: nil, an errno, ErrNoIOUringBind or ErrIOUringRefused.
func IOUringBind(fd int, addr string, port int) error {
	var p ioUringParams
	ring, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	switch errno {
	case 0:
	case unix.ENOSYS:
		return fmt.Errorf("%w: io_uring_setup: %v", ErrNoIOUringBind, errno)
	case unix.EPERM:
		return ErrIOUringRefused
	default:
		return fmt.Errorf("io_uring_setup: %w", errno)
	}
	defer unix.Close(int(ring))
	if !opSupported(int(ring), ioringOpBind) {
		return fmt.Errorf("%w: the ring's probe does not list op %d", ErrNoIOUringBind, ioringOpBind)
	}
	if p.Features&ioringFeatSingleMmap == 0 {
		return fmt.Errorf("io_uring without IORING_FEAT_SINGLE_MMAP (pre-5.4): not supported by this helper")
	}
	ringSize := max(int(p.SQOff.Array+p.SQEntries*4), int(p.CQOff.CQEs+p.CQEntries*cqeSize))
	rings, err := unix.Mmap(int(ring), ioringOffSQRing, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring rings: %w", err)
	}
	defer unix.Munmap(rings)
	sqes, err := unix.Mmap(int(ring), ioringOffSQEs, int(p.SQEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	defer unix.Munmap(sqes)

	sa, salen := rawSockaddr(addr, port)
	sqe := (*ioUringSQE)(unsafe.Pointer(&sqes[0]))
	*sqe = ioUringSQE{Opcode: ioringOpBind, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(&sa[0]))), Addr2: uint64(salen)}
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rings[off])) }
	tail := atomic.LoadUint32(u32(p.SQOff.Tail))
	*u32(p.SQOff.Array + (tail&*u32(p.SQOff.RingMask))*4) = 0
	atomic.StoreUint32(u32(p.SQOff.Tail), tail+1)

	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, ring, 1, 1, ioringEnterGetEvents, 0, 0)
	runtime.KeepAlive(sa)
	if errno != 0 {
		return fmt.Errorf("io_uring_enter: %v", errno)
	}
	head := atomic.LoadUint32(u32(p.CQOff.Head))
	if head == atomic.LoadUint32(u32(p.CQOff.Tail)) {
		return errors.New("io_uring: no completion")
	}
	cqe := p.CQOff.CQEs + (head&*u32(p.CQOff.RingMask))*cqeSize
	res := *(*int32)(unsafe.Pointer(&rings[cqe+8]))
	atomic.StoreUint32(u32(p.CQOff.Head), head+1)
	if res < 0 {
		return syscall.Errno(-res)
	}
	return nil
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
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", unix.ByteSliceToString(u.Release[:]), err)
	}
	return ma > major || ma == major && mi >= minor
}

// opSupported asks the ring (IORING_REGISTER_PROBE) whether op exists.
func opSupported(ring int, op uint8) bool {
	// struct io_uring_probe, then ops[] of struct io_uring_probe_op (8 bytes).
	buf := make([]byte, 16+8*ioUringProbeMaxOps)
	_, _, errno := unix.Syscall6(sysIOUringRegisterNum, uintptr(ring), ioringRegisterProbe, uintptr(unsafe.Pointer(&buf[0])), ioUringProbeMaxOps, 0, 0)
	if errno != 0 || buf[0] < op { // last_op
		return false
	}
	flags := *(*uint16)(unsafe.Pointer(&buf[16+8*int(op)+2]))
	return flags&ioUringOpSupported != 0
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
