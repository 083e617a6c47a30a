package host_test

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// threadsOutside lists the threads of this process whose network
// namespace is not want.
func threadsOutside(t *testing.T, want uint32) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		if ino, err := host.NetnsInode("/proc/self/task/" + task.Name() + "/ns/net"); err == nil && ino != want {
			out = append(out, task.Name())
		}
	}
	return out
}

// InNetns runs fn in the namespace given, or in one fn unshares, and
// leaves no thread of the process in it afterwards — also when fn ends its
// goroutine instead of returning, which it says.
func TestInNetns(t *testing.T) {
	ns := testenv.PrivateNetns(t)
	want, err := host.NetnsInode(ns.Name())
	if err != nil {
		t.Fatal(err)
	}
	own, err := host.NetnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	in := func() (uint32, error) { return host.NetnsInode("/proc/thread-self/ns/net") }

	var got uint32
	if err := host.InNetns(ns, func() (err error) { got, err = in(); return err }); err != nil || got != want {
		t.Errorf("InNetns(ns): ran in %d (%v), want %d", got, err, want)
	}
	if err := host.InNetns(nil, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		got, _ = in()
		return nil
	}); err != nil || got == own || got == 0 {
		t.Errorf("InNetns(nil) with unshare: ran in %d (%v), want a new namespace", got, err)
	}
	err = host.InNetns(ns, func() error { runtime.Goexit(); return nil })
	if err == nil || !strings.Contains(err.Error(), "did not return") {
		t.Errorf("InNetns(ns) with fn ending its goroutine: %v, want an error saying it did not return", err)
	}
	if left := threadsOutside(t, own); len(left) > 0 {
		t.Errorf("threads %v are left outside the process's namespace %d", left, own)
	}
}
