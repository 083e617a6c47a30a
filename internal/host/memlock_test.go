package host_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// RaiseMemlock lifts RLIMIT_MEMLOCK on a kernel before 5.11, where BPF
// maps are charged to it, and leaves it alone on later ones (the commands
// `run` starts inherit it). Run in vmtest's 5.10 guest too.
func TestRaiseMemlock(t *testing.T) {
	testenv.RequireRoot(t)
	var old unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &old, nil) })
	low := unix.Rlimit{Cur: 64 << 10, Max: old.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &low, nil); err != nil {
		t.Fatal(err)
	}
	if err := host.RaiseMemlock(); err != nil {
		t.Fatal(err)
	}
	var now unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &now); err != nil {
		t.Fatal(err)
	}
	release := host.KernelRelease()
	want := low
	if !host.ReleaseAtLeast(5, 11) {
		want = unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	}
	if now != want {
		t.Errorf("kernel %s: RLIMIT_MEMLOCK after RaiseMemlock %+v, want %+v", release, now, want)
	}
	t.Logf("kernel %s: RLIMIT_MEMLOCK %+v", release, now)
}
