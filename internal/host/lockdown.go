package host

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

const lockdownPath = "/sys/kernel/security/lockdown"

// Lockdown returns the kernel's active lockdown mode ("none", "integrity",
// "confidentiality"), which decides whether kprobes and fentry may attach.
// Where securityfs is not mounted it is read from a private mount of it.
func Lockdown() (string, error) {
	b, err := os.ReadFile(lockdownPath)
	if err != nil {
		b, err = readWithSecurityfs()
	}
	if err != nil {
		return "", err
	}
	// The active mode is bracketed: "none [integrity] confidentiality".
	s := string(b)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j], nil
		}
	}
	return strings.TrimSpace(s), nil
}

// readWithSecurityfs reads the lockdown mode where securityfs is not
// mounted, by mounting it in a private mount namespace of a thread that
// then exits: the host's mounts are never touched.
func readWithSecurityfs() ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result)
	go func() {
		// Never unlocked: when this goroutine ends, Go discards the thread
		// (or, were it the main thread, wedges it unused), so no other
		// goroutine ever runs in the private mount namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			ch <- result{nil, fmt.Errorf("unshare mount namespace: %w", err)}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			ch <- result{nil, fmt.Errorf("make mounts private: %w", err)}
			return
		}
		if err := unix.Mount("securityfs", "/sys/kernel/security", "securityfs", 0, ""); err != nil {
			ch <- result{nil, fmt.Errorf("mount securityfs: %w", err)}
			return
		}
		b, err := os.ReadFile(lockdownPath)
		if err != nil {
			err = fmt.Errorf("no lockdown LSM in this kernel: %w", err)
		}
		ch <- result{b, err}
	}()
	r := <-ch
	return r.b, r.err
}
