package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
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

// ErrNoIOUringBind says the kernel (or its io_uring policy) has no
// IORING_OP_BIND.
var ErrNoIOUringBind = errors.New("io_uring has no IORING_OP_BIND here (Linux 6.11+, io_uring enabled)")

// IOUringBind binds fd to addr:port with one IORING_OP_BIND request — a
// bind() that never passes through the bind syscall — and returns its
// result: nil, an errno, or ErrNoIOUringBind.
func IOUringBind(fd int, addr string, port int) error {
	var p ioUringParams
	ring, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return fmt.Errorf("%w: io_uring_setup: %v", ErrNoIOUringBind, errno)
	}
	defer unix.Close(int(ring))
	if !opSupported(int(ring), ioringOpBind) {
		return ErrNoIOUringBind
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
