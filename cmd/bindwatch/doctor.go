package main

import (
	"errors"
	"os"

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
			&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text, json (one object) or ecs (an Elastic Common Schema document). Default: text on a terminal, json otherwise"},
		},
		Action: doctorAction,
	}
}

func doctorAction(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("doctor takes no arguments, got %q (it checks this whole host: bindwatch doctor [--format json])", c.Args().First())
	}
	format, err := outputFormat(c, os.Stdout)
	if err != nil {
		return err
	}
	var u unix.Utsname
	unix.Uname(&u)
	r := events.Doctor{
		Type:       events.TypeDoctor,
		Version:    events.Version,
		Bindwatch:  version,
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
			why = errors.New("BPF iterators need CAP_BPF and CAP_PERFMON (root has them); without it only the processes whose fds bindwatch may read are found")
		}
		if why != nil {
			r.Owners += " (" + why.Error() + ")"
		}
		res.Close()
	}
	if format != events.FormatText {
		write, err := recordWriter(os.Stdout, format)
		if err != nil {
			return err
		}
		if err := write(&r); err != nil {
			return err
		}
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

// lockdown is the kernel's lockdown mode, as doctor says it.
func lockdown() string {
	mode, err := host.Lockdown()
	if err != nil {
		if os.Geteuid() != 0 {
			return "unknown (securityfs is not mounted, and mounting it to look needs root)"
		}
		return "unknown (" + err.Error() + ")"
	}
	return mode
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
	caps := allCaps
	if host.HasCap(host.CapSysAdmin) { // stands for CAP_BPF and CAP_PERFMON
		caps = caps[2:]
	}
	missing := host.MissingCaps(caps...)
	switch {
	case missing == "" && os.Geteuid() == 0:
		return "root"
	case missing == "":
		return "every capability bindwatch uses"
	}
	return "enough to trace; without " + missing + " (README.md, Install, says what each is for)"
}

// allCaps are the capabilities some command of bindwatch uses (README.md,
// Install).
var allCaps = []int{host.CapBPF, host.CapPerfmon, host.CapSysPtrace, host.CapDACReadSearch, host.CapKill, host.CapNetAdmin, host.CapSysAdmin}
