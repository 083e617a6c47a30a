package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// unitCgroup makes the cgroup v2 directory rel (system.slice/NAME.service,
// as systemd names a service's) and returns an open descriptor of it, to
// start processes in. It is removed when the test ends, once the
// processes started in it are gone.
func unitCgroup(t *testing.T, rel string) int {
	t.Helper()
	testenv.RequireRoot(t)
	mount := ""
	for _, m := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			mount = m
			break
		}
	}
	if mount == "" {
		t.Fatal("no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup (hint: mount -t cgroup2 none /sys/fs/cgroup/unified)")
	}
	var made []string
	dir := mount
	for _, part := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		} else if !errors.Is(err, os.ErrExist) {
			t.Fatalf("make cgroup %s: %v", dir, err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		for i := len(made) - 1; i >= 0; i-- {
			// A process that has just exited may still be counted.
			for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(20 * time.Millisecond) {
				err := unix.Rmdir(made[i])
				if err == nil || time.Now().After(deadline) {
					if err != nil {
						t.Errorf("remove cgroup %s: %v", made[i], err)
					}
					break
				}
			}
		}
	})
	return fd
}

// failIn runs a helper that fails to bind tcp 127.0.0.1:port, started in
// the cgroup open at fd.
func failIn(t *testing.T, fd, port int) {
	t.Helper()
	cmd := testenv.Helper(fmt.Sprintf("bind tcp 127.0.0.1 %d", port))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != int(syscall.EADDRINUSE) {
		t.Fatalf("helper in the unit: %v, want exit %d (EADDRINUSE)", err, syscall.EADDRINUSE)
	}
}

// failures decodes the bind_failure records among lines.
func failures(t *testing.T, lines [][]byte) []events.Failure {
	t.Helper()
	var out []events.Failure
	for _, l := range lines {
		if !bytes.Contains(l, []byte(`"type":"bind_failure"`)) {
			continue
		}
		var f events.Failure
		if err := json.Unmarshal(l, &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// A process in a systemd service's cgroup is named with its unit — the
// failing process and the holder, in JSON (checked against the schema),
// ECS (service.name) and text — and the hint stops the unit with
// systemctl, never kill PID; --unit reports only that unit's failures;
// free says the unit may start its process again and how to stop it. Real
// cgroups, processes and sockets; the unit is only a cgroup systemd would
// make (no systemd runs here).
func TestUnitOfProcesses(t *testing.T) {
	unit := fmt.Sprintf("bwtest-%d.service", os.Getpid())
	fd := unitCgroup(t, "system.slice/"+unit)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	holder := testenv.StartHelperInCgroup(t, "hold tcp 127.0.0.1 "+p, fd)

	inUnit := func(f events.Failure) bool { return f.Process.Unit == unit }
	t.Run("json", func(t *testing.T) {
		lines := runTraceUntil(t, func() { failIn(t, fd, port) }, func(lines [][]byte) bool {
			return len(failures(t, lines)) > 0
		}, "--port", p, "--fold", "0")
		schemaLines(t, lines)
		fs := failures(t, lines)
		if len(fs) != 1 || !inUnit(fs[0]) || fs[0].Process.UnitManager != "" {
			t.Fatalf("want one failure of a process in %s, got %+v", unit, fs)
		}
		f := fs[0]
		if len(f.Holders) == 0 || len(f.Holders[0].Processes) == 0 || f.Holders[0].Processes[0].PID != holder.PID || f.Holders[0].Processes[0].Unit != unit {
			t.Fatalf("holders %+v: want pid %d in unit %s", f.Holders, holder.PID, unit)
		}
		if want := "systemctl stop " + unit; !strings.Contains(f.Hint, want) || strings.Contains(f.Hint, "kill "+strconv.Itoa(holder.PID)) {
			t.Errorf("hint %q: want %q, and no kill of pid %d", f.Hint, want, holder.PID)
		}
	})

	t.Run("ecs and text", func(t *testing.T) {
		lines := runTraceUntil(t, func() { failIn(t, fd, port) }, func(lines [][]byte) bool { return bytes.Contains(bytes.Join(lines, nil), []byte("bind-failed")) },
			"--port", p, "--fold", "0", "--format", "ecs")
		docs := ecsDocs(t, loadECSSchema(t), "unit", string(bytes.Join(lines, []byte("\n"))))
		if len(docs["bind_failure"]) != 1 || field(docs["bind_failure"][0], "service.name") != unit {
			t.Errorf("ECS bind_failure documents %v: want one with service.name %s", docs["bind_failure"], unit)
		}
		lines = runTraceUntil(t, func() { failIn(t, fd, port) }, func(lines [][]byte) bool { return bytes.Contains(bytes.Join(lines, nil), []byte("EADDRINUSE")) },
			"--port", p, "--fold", "0", "--format", "text")
		text := string(bytes.Join(lines, []byte("\n")))
		if want := "in unit " + unit + " <- held by pid " + strconv.Itoa(holder.PID); !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
		if want := "LISTEN 127.0.0.1:" + p + " in unit " + unit; !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	})

	t.Run("--unit", func(t *testing.T) {
		lines := runTraceUntil(t, func() {
			// Outside the unit first: read, and left out.
			testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
			failIn(t, fd, port)
		}, func(lines [][]byte) bool { return len(failures(t, lines)) > 0 }, "--port", p, "--fold", "0", "--unit", strings.TrimSuffix(unit, ".service"))
		schemaLines(t, lines)
		fs := failures(t, lines)
		if len(fs) != 1 || !inUnit(fs[0]) {
			t.Errorf("--unit %s: want only the failure in the unit, got %+v", unit, fs)
		}
		var stop events.Stop
		if err := json.Unmarshal(lines[len(lines)-1], &stop); err != nil || stop.Type != events.TypeStop {
			t.Fatalf("last line is no stop record (%v): %s", err, lines[len(lines)-1])
		}
		if stop.OtherUnits != 1 || stop.Reported != 1 || stop.Failures != stop.Reported+stop.Folded+stop.Lost+stop.Unread+stop.OtherUnits {
			t.Errorf("stop %+v: want 1 reported, 1 of other units, and failures = reported + folded + lost + unread + other_units", stop)
		}
	})

	t.Run("free", func(t *testing.T) {
		warn := "runs in systemd unit " + unit + ", which may start the service again after the signal (its Restart= could not be read): `systemctl stop " + unit + "` stops it for good"
		res := bindwatch(t, "free", p+"/tcp", "--format", "text")
		if want := "note: pid " + strconv.Itoa(holder.PID) + " " + warn; res.code != 1 || !strings.Contains(res.stdout, want) {
			t.Errorf("free (dry run): want exit 1 and %q; %s", want, res)
		}
		res = bindwatch(t, "free", p+"/tcp", "--kill", "--format", "text")
		if want := "note: the signalled pid " + strconv.Itoa(holder.PID) + " " + warn; res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("free --kill: want exit 0 and %q; %s", want, res)
		}
	})
}

// A user's unit (under user@UID.service) is named with its manager, and
// its hint goes through that user's manager: systemctl --user -M UID@.
func TestUserUnitOfHolder(t *testing.T) {
	uid := 4000 + os.Getpid()%1000
	manager := fmt.Sprintf("user@%d.service", uid)
	fd := unitCgroup(t, fmt.Sprintf("user.slice/user-%d.slice/%s/app.slice/bwtest.service", uid, manager))
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	holder := testenv.StartHelperInCgroup(t, "hold tcp 127.0.0.1 "+p, fd)
	lines := runTraceUntil(t, func() {
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	}, func(lines [][]byte) bool { return len(failures(t, lines)) > 0 }, "--port", p, "--fold", "0")
	schemaLines(t, lines)
	fs := failures(t, lines)
	if len(fs) != 1 || len(fs[0].Holders) == 0 || len(fs[0].Holders[0].Processes) == 0 {
		t.Fatalf("want one failure with a holder, got %+v", fs)
	}
	hp := fs[0].Holders[0].Processes[0]
	if hp.PID != holder.PID || hp.Unit != "bwtest.service" || hp.UnitManager != manager {
		t.Errorf("holder %+v: want pid %d, unit bwtest.service of %s", hp, holder.PID, manager)
	}
	if want := fmt.Sprintf("systemctl --user -M %d@ stop bwtest.service", uid); !strings.Contains(fs[0].Hint, want) {
		t.Errorf("hint %q: want %q", fs[0].Hint, want)
	}
}
