package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this host: kernel, BTF, lockdown, tracefs, privileges, and which backends really work",
		Description: `Loads and attaches every backend for real (then detaches it) and says which
work here and why the others do not — the same order --backend auto uses.
Exit status: 0 when at least one backend works, 1 when none does.

Example:
  sudo bindwatch doctor
  sudo bindwatch doctor --format json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
		},
		Action: doctorAction,
	}
}

func doctorAction(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("doctor takes no arguments, got %q (it checks this whole host: bindwatch doctor [--format json])", c.Args().First())
	}
	format := c.String("format")
	if format != "text" && format != "json" {
		return usagef("--format %s: text or json", format)
	}
	var u unix.Utsname
	unix.Uname(&u)
	r := events.Doctor{
		Version:    version,
		Kernel:     unix.ByteSliceToString(u.Release[:]),
		Arch:       unix.ByteSliceToString(u.Machine[:]),
		BTF:        fileState("/sys/kernel/btf/vmlinux", "present", "missing: CO-RE needs CONFIG_DEBUG_INFO_BTF=y"),
		Lockdown:   lockdown(),
		Privileges: privileges(),
		Backends:   map[string]string{},
	}
	for _, b := range tracer.Backends() {
		r.Order = append(r.Order, b.Name())
	}
	for _, st := range tracer.Probe() {
		if st.Err == nil {
			r.Backends[st.Name] = "ok"
			if r.Auto == "" {
				r.Auto = st.Name
			}
		} else {
			r.Backends[st.Name] = st.Err.Error()
		}
	}
	r.Tracefs = tracefsState() // after Probe: the tracepoint backend mounts it if absent
	if res, err := resolve.New(resolve.Options{}); err == nil {
		method, why := res.OwnerLookup()
		r.Owners = method
		if why != nil && tracer.CheckPrivileges() != nil {
			why = errors.New("BPF iterators need root; without it only this user's own processes are found")
		}
		if why != nil {
			r.Owners += " (" + why.Error() + ")"
		}
		res.Close()
	}
	if format == "json" {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
	} else {
		r.WriteText(os.Stdout)
	}
	if r.Auto == "" {
		return cli.Exit("", 1)
	}
	return nil
}

func fileState(path, yes, no string) string {
	if _, err := os.Stat(path); err == nil {
		return yes + " (" + path + ")"
	}
	return no
}

const lockdownPath = "/sys/kernel/security/lockdown"

func lockdown() string {
	b, err := os.ReadFile(lockdownPath)
	if err != nil {
		b, err = readWithSecurityfs()
	}
	if err != nil {
		if os.Geteuid() != 0 {
			return "unknown (securityfs is not mounted, and mounting it to look needs root)"
		}
		return "unknown (" + err.Error() + ")"
	}
	// The active mode is bracketed: "none [integrity] confidentiality".
	s := string(b)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return strings.TrimSpace(s)
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

func tracefsState() string {
	if p := host.Tracefs(); p != "" {
		return "mounted at " + p
	}
	return "not mounted (the tracepoint backend mounts it at /sys/kernel/tracing when it can)"
}

func privileges() string {
	if err := requireRoot(); err != nil {
		return "insufficient: " + err.Error()
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return "CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
}
