package tracer

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// calibratePort is the port of the calibrating io_uring bind: any port
// does, since the bind never happens (the socket is bound already); one
// above 1023, so that a bindwatch without CAP_NET_BIND_SERVICE is refused
// for the socket being bound (EINVAL), not for the port (EACCES).
const calibratePort = 4099

// calibrateIOUring finds where this kernel keeps an io_uring bind's
// address (bpf: uring_addr_at), with one io_uring bind of its own: a
// marked socket, already bound, asked to bind 127.0.0.1:calibratePort —
// io_bind_prep copies the address, the bind fails with EINVAL, and the
// program sees the completion of this process's request and looks for the
// port in each place. Without it io_uring binds are reported without
// their address; the error says why.
func calibrateIOUring(coll *ebpf.Collection) error {
	vars := coll.Variables
	if err := vars[bindwatchVarUringCalibPort].Set(uint16(calibratePort)); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// The socket names the calibrating bind: bindwatch's pid is another
	// in its own pid namespace (a container, the systemd unit's).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if err := vars[bindwatchVarUringCalibIno].Set(st.Ino); err != nil {
		return err
	}
	defer vars[bindwatchVarUringCalibIno].Set(uint64(0))
	host.MarkProbe(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind the calibrating socket: %w", err)
	}
	// struct sockaddr_in: family, port (network order), address.
	sa := [16]byte{unix.AF_INET, 0, byte(calibratePort >> 8), byte(calibratePort & 0xff), 127, 0, 0, 1}
	err = host.IOUringDo(host.IOUringSQE{Opcode: host.IOUringOpBind, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(&sa[0]))), Addr2: uint64(len(sa))})
	runtime.KeepAlive(&sa)
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("io_uring bind: %w", err)
	}
	var at uint8
	if err := vars[bindwatchVarUringAddrAt].Get(&at); err != nil {
		return err
	}
	if at == 0 {
		return errors.New("the program did not find the calibrating bind's address in its request")
	}
	return nil
}
