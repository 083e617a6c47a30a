package tracer

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The tracepoint backend finds, at start, where this kernel keeps an
// io_uring bind's address (calibrateIOUring), and reads it from there: the
// failure carries the address and port the bind asked for. The layout
// moved after 6.11 (and was backported), so this runs on every kernel with
// IORING_OP_BIND, whichever backend the run tests.
func TestIOUringBindAddress(t *testing.T) {
	testenv.RequireRoot(t)
	if !haveIOUringBind() {
		if testenv.KernelAtLeast(t, 6, 11) {
			t.Skip("Linux 6.11+ without struct io_bind in its BTF (CONFIG_IO_URING off?)")
		}
		t.Log("not applicable: this kernel predates IORING_OP_BIND (Linux 6.11)")
		return
	}
	if err := testenv.IOUringBind(-1, "127.0.0.1", 0); errors.Is(err, testenv.ErrIOUringRefused) {
		testenv.AllowIOUring(t)
	}
	port := testenv.FreePort(t)
	tr, err := Open(Config{Backend: "tracepoint", Ports: []PortRange{{uint16(port), uint16(port)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var at uint8
	if err := tr.coll.Variables[bindwatchVarUringAddrAt].Get(&at); err != nil {
		t.Fatal(err)
	}
	if tr.IOUringErr != nil || at == 0 {
		t.Fatalf("calibration: %v (uring_addr_at %d)", tr.IOUringErr, at)
	}
	t.Logf("calibrated: the address at %d (1: a sockaddr_storage, 2: io_async_msghdr.addr)", at)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := testenv.IOUringBind(fd, "127.0.0.1", port); err != syscall.EADDRINUSE {
		t.Fatalf("io_uring bind = %v, want EADDRINUSE", err)
	}
	ev := readFailure(t, tr, port)
	if ev.Hook != uint8(bindwatchBwHookBW_HOOK_IOURING_BIND) || ev.Pid != uint32(os.Getpid()) || ev.Err != uint32(syscall.EADDRINUSE) ||
		ev.Addr[0] != 127 || ev.Addr[3] != 1 || ev.HasHolder != 1 {
		t.Errorf("event hook %d pid %d err %d addr %v holder %d (uring_addr_at %d): want the io_uring hook, this process, EADDRINUSE, 127.0.0.1 and the holder",
			ev.Hook, ev.Pid, ev.Err, ev.Addr[:4], ev.HasHolder, at)
	}
}
