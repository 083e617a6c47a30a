package host

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring uapi (include/uapi/linux/io_uring.h) that IOUringDo uses.
// x/sys/unix has the syscall numbers but not the ring layout.
const (
	IOUringOpBind         = 56 // IORING_OP_BIND, 6.11+
	IOUringOpListen       = 57 // IORING_OP_LISTEN, 6.11+
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

// IOUringSQE is a submission queue entry (struct io_uring_sqe).
type IOUringSQE struct {
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

// IOUringDo submits one request on a ring of its own and waits for its
// completion: nil, the request's errno, ErrNoIOUringBind (no such op) or
// ErrIOUringRefused.
func IOUringDo(req IOUringSQE) error {
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
	if !opSupported(int(ring), req.Opcode) {
		return fmt.Errorf("%w: the ring's probe does not list op %d", ErrNoIOUringBind, req.Opcode)
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

	sqe := (*IOUringSQE)(unsafe.Pointer(&sqes[0]))
	*sqe = req
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&rings[off])) }
	tail := atomic.LoadUint32(u32(p.SQOff.Tail))
	*u32(p.SQOff.Array + (tail&*u32(p.SQOff.RingMask))*4) = 0
	atomic.StoreUint32(u32(p.SQOff.Tail), tail+1)

	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, ring, 1, 1, ioringEnterGetEvents, 0, 0)
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
