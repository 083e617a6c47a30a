package watch

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// io_uring's IORING_OP_BIND (6.11+) binds without the bind syscall. The
// kernel-function backends hook inet_bind itself, so they report it, naming
// their hook; the tracepoint backend hooks the syscall and cannot see it —
// the documented limit this test also pins.
func TestIOUringBind(t *testing.T) {
	port, sentinel := testenv.FreePort(t), testenv.FreePort(t)
	cfg := onlyPort(port)
	cfg.Ports = append(cfg.Ports, cfg.Ports[0])
	cfg.Ports[1].Lo, cfg.Ports[1].Hi = uint16(sentinel), uint16(sentinel)
	s := startSession(t, cfg)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = testenv.IOUringBind(fd, "127.0.0.1", port)
	if errors.Is(err, testenv.ErrIOUringRefused) {
		testenv.AllowIOUring(t)
		err = testenv.IOUringBind(fd, "127.0.0.1", port)
	}
	if errors.Is(err, testenv.ErrNoIOUringBind) {
		if testenv.KernelAtLeast(t, 6, 11) {
			// A skip fails CI (BINDWATCH_REQUIRE_BPF=1): the README's
			// io_uring claim must not pass untested on a kernel that has it.
			t.Skipf("Linux 6.11+ but io_uring cannot bind here (CONFIG_IO_URING off?): %v", err)
		}
		t.Logf("not applicable: this kernel predates IORING_OP_BIND (Linux 6.11): %v", err)
		return
	}
	if err != syscall.EADDRINUSE {
		t.Fatalf("io_uring bind = %v, want EADDRINUSE", err)
	}
	// A syscall failure after it: once it is reported, the io_uring one
	// would have been too.
	testenv.Hold(t, "udp", "127.0.0.1", sentinel, testenv.Opts{})
	testenv.FailBind(t, "udp", "127.0.0.1", sentinel, testenv.Opts{}, syscall.EADDRINUSE)
	backend := s.waitFailure(sentinel).Backend

	var seen []string
	for _, f := range s.failures() {
		if int(f.Port) == port {
			seen = append(seen, f.Hook)
		}
	}
	switch backend {
	case "tracepoint":
		if len(seen) != 0 {
			t.Errorf("the tracepoint backend reported an io_uring bind (hooks %v): the README says it cannot", seen)
		}
	default:
		want := map[string]string{"fentry": "fexit/inet_bind", "kprobe": "kretprobe/inet_bind"}[backend]
		if len(seen) != 1 || seen[0] != want {
			t.Errorf("backend %s reported the io_uring bind with hooks %v, want [%s]", backend, seen, want)
		}
	}
}

// io_uring refused by policy (kernel.io_uring_disabled, 6.6+) is EPERM, and
// IOUringBind names it as refused — not as a kernel without the op, which
// would let TestIOUringBind pass without binding.
func TestIOUringRefusalIsNamed(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := os.Stat(testenv.IOUringDisabledSysctl); err != nil {
		t.Logf("not applicable: no kernel.io_uring_disabled before Linux 6.6 (%v)", err)
		return
	}
	testenv.AllowIOUring(t) // restores the host's value at the end
	old, _ := os.ReadFile(testenv.IOUringDisabledSysctl)
	if err := os.WriteFile(testenv.IOUringDisabledSysctl, []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
	if err == nil {
		err = testenv.IOUringBind(fd, "127.0.0.1", 0)
		unix.Close(fd)
	}
	if werr := os.WriteFile(testenv.IOUringDisabledSysctl, old, 0); werr != nil {
		t.Fatal(werr)
	}
	if !errors.Is(err, testenv.ErrIOUringRefused) {
		t.Errorf("with kernel.io_uring_disabled=2, IOUringBind = %v, want %v", err, testenv.ErrIOUringRefused)
	}
}
