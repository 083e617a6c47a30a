// Command guestinit is the /init of vmtest's initramfs. Its child mounts the
// pseudo-filesystems the tests need, brings the loopback interface up,
// loads the kernel modules the plan lists for the running kernel, runs
// every test binary of the plan once per backend with its output and marker
// lines on the serial console; init itself reaps orphans meanwhile, and
// powers the machine off.
//
// It must be built with CGO_ENABLED=0: the initramfs has no libc.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/vmtest/protocol"
)

// runnerEnv marks the child that runs the plan.
const runnerEnv = "VMTEST_RUNNER"

// main, as pid 1, runs the plan in a child process and reaps every orphan
// until that child is done: the tests then have an ordinary parent, not
// init (bindwatch treats pid 1 specially, and the tests check it).
func main() {
	if os.Getenv(runnerEnv) == "1" {
		if err := run(); err != nil {
			fmt.Println(protocol.ErrorLine(err.Error()))
			os.Exit(1)
		}
		return
	}
	runner := exec.Command(os.Args[0]) // "/init"
	runner.Env = []string{runnerEnv + "=1"}
	runner.Stdin, runner.Stdout, runner.Stderr = os.Stdin, os.Stdout, os.Stdout // no /dev/null before devtmpfs
	if err := runner.Start(); err != nil {
		fmt.Println(protocol.ErrorLine(fmt.Sprintf("start the runner: %v", err)))
		powerOff()
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if pid == runner.Process.Pid || err == unix.ECHILD {
			break
		}
	}
	powerOff()
}

func run() error {
	if err := mountAll(); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	release, err := announceKernel()
	if err != nil {
		return err
	}
	plan, err := readPlan()
	if err != nil {
		return err
	}
	if err := loadModules(release, plan.Modules[release]); err != nil {
		return err
	}
	for _, backend := range plan.Backends {
		for _, test := range plan.Tests {
			if test.RunsOn(backend) {
				runTest(plan, backend, test)
			}
		}
	}
	fmt.Println(protocol.DoneLine())
	return nil
}

type mount struct {
	source, target, fstype string
	flags                  uintptr
}

// mounts lists what the tests expect to find. Tracefs is deliberately not
// here: bindwatch mounts it itself when it is absent.
var mounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
}

func mountAll() error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w (is the filesystem built into this kernel?)", m.fstype, m.target, err)
		}
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: set flags: %w", err)
	}
	return nil
}

// announceKernel prints and returns the running kernel's release.
func announceKernel() (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	uptime, err := readUptime()
	if err != nil {
		return "", err
	}
	release := unix.ByteSliceToString(uts.Release[:])
	fmt.Println(protocol.KernelLine(release, uptime))
	return release, nil
}

// readUptime returns how long the kernel has been up, from /proc/uptime
// (sysinfo(2) only has seconds).
func readUptime() (time.Duration, error) {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, fmt.Errorf("uptime: %w", err)
	}
	seconds, _, _ := strings.Cut(string(data), " ")
	d, err := time.ParseDuration(seconds + "s")
	if err != nil {
		return 0, fmt.Errorf("uptime: parse %q: %w", data, err)
	}
	return d, nil
}

func readPlan() (protocol.Plan, error) {
	var plan protocol.Plan
	data, err := os.ReadFile(protocol.PlanPath)
	if err != nil {
		return plan, fmt.Errorf("read plan: %w (the harness packs it into the initramfs)", err)
	}
	if err := json.Unmarshal(data, &plan); err != nil {
		return plan, fmt.Errorf("read plan %s: %w", protocol.PlanPath, err)
	}
	return plan, nil
}

// loadModules loads the module files of release in order; compressed
// ones (.ko.xz) are left to the kernel to decompress.
func loadModules(release string, files []string) error {
	for _, file := range files {
		name := protocol.ModuleDir(release) + "/" + file
		if err := loadModule(name); err != nil {
			return fmt.Errorf("load module %s: %w (is it built for %s?)", name, err, release)
		}
	}
	return nil
}

func loadModule(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(name, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// runTest runs one test binary for one backend between a begin and an end
// marker. Failures are the harness's to judge, from the output and the exit
// code.
func runTest(plan protocol.Plan, backend string, test protocol.Test) {
	fmt.Println(protocol.BeginLine(backend, test.Name))
	cmd := exec.Command(test.Binary, test.Args(plan)...)
	cmd.Dir = test.Dir
	cmd.Env = append(testEnv(backend), test.Env...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stdout
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		if plan.BinaryTimeout > 0 {
			quit := time.AfterFunc(plan.BinaryTimeout, func() {
				fmt.Printf("\nvmtest: %s ran out of its %s, sending SIGQUIT\n", test.Name, plan.BinaryTimeout)
				cmd.Process.Signal(unix.SIGQUIT)
				time.AfterFunc(5*time.Second, func() { cmd.Process.Kill() })
			})
			defer quit.Stop()
		}
		err = cmd.Wait()
	}
	elapsed := time.Since(start).Round(time.Millisecond)
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		fmt.Println(protocol.ErrorLine(fmt.Sprintf("start %s: %v", test.Binary, err)))
	}
	// Test output may not end with a newline; keep the marker on its own line.
	fmt.Println()
	fmt.Println(protocol.EndLine(backend, test.Name, cmd.ProcessState.ExitCode(), elapsed))
}

func testEnv(backend string) []string {
	return []string{
		"PATH=/bin:/sbin:/usr/bin:/usr/sbin",
		"HOME=/root",
		"TMPDIR=/tmp",
		protocol.EnvBackend + "=" + backend,
		protocol.EnvRequireBPF + "=1",
		protocol.EnvBindwatch + "=" + protocol.BindwatchPath,
	}
}

func powerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Returning from init panics the kernel, which (with panic=-1 and qemu's
	// -no-reboot) ends the VM as well.
	fmt.Println(protocol.ErrorLine(fmt.Sprintf("power off: %v", err)))
}
