package enrich

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// UnitOf names the systemd unit a cgroup v2 path belongs to: the last path
// element that ends in .service, .scope or .socket ("/system.slice/
// nginx.service" is nginx.service; a service's own sub-cgroups,
// "/system.slice/foo.service/worker", are foo.service's). For a unit of a
// user's service manager ("/user.slice/user-1000.slice/user@1000.service/
// app.slice/foo.service"), manager is that manager's unit,
// "user@1000.service"; it is "" for a unit of the system's manager. Both
// are "" when no element names a unit ("/", a cgroupfs container).
//
// This is the one rule for units: the record's unit, the hints' systemctl
// commands and --unit's filter all use it. Cgroup names under a delegated
// subtree (a user's manager, a container) are whatever their creator chose:
// hostile bytes, escaped when printed.
func UnitOf(path string) (unit, manager string) {
	parts := strings.Split(path, "/")
	at := -1
	for i := len(parts) - 1; i >= 0; i-- {
		if isUnitName(parts[i]) {
			unit, at = parts[i], i
			break
		}
	}
	if at < 0 {
		return "", ""
	}
	for i := at - 1; i >= 0; i-- {
		if strings.HasPrefix(parts[i], "user@") && strings.HasSuffix(parts[i], ".service") {
			return unit, parts[i]
		}
	}
	return unit, ""
}

func isUnitName(s string) bool {
	for _, suffix := range []string{".service", ".scope", ".socket"} {
		if name, ok := strings.CutSuffix(s, suffix); ok && name != "" {
			return true
		}
	}
	return false
}

// systemdV1Path is the path of the name=systemd cgroup v1 hierarchy in
// /proc/PID/cgroup, where systemd keeps its units on a v1 or hybrid host
// when a process's unified ("0::") path says nothing.
func systemdV1Path(procCgroup string) string {
	for _, line := range strings.Split(procCgroup, "\n") {
		fields := strings.SplitN(line, ":", 3)
		if len(fields) == 3 && fields[1] == "name=systemd" {
			return fields[2]
		}
	}
	return ""
}

// unitDirs are where systemd's system manager finds unit files, the first
// that has one winning (systemd.unit(5)): root's directories, so their
// links (an enabled or masked unit) are followed.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/transient", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// maxUnitFileSize bounds a unit file or drop-in read for Restart=.
const maxUnitFileSize = 64 << 10

// UnitRestart is the Restart= setting of a system service as its unit
// files say (the unit's file, or its template's, then its drop-ins, the
// last setting winning), "no" when they have none, or "" when no file was
// found (a transient unit made over D-Bus, a user's unit, a name that is
// no service): then systemd's answer is not known here. root is where the
// host's root is seen ("/"). Only files are read, never D-Bus.
func UnitRestart(root, unit string) string {
	if !strings.HasSuffix(unit, ".service") || strings.ContainsAny(unit, "/\x00") || strings.HasPrefix(unit, ".") {
		return ""
	}
	names := []string{unit}
	if at := strings.Index(unit, "@"); at > 0 {
		names = append(names, unit[:at+1]+".service") // the template
	}
	restart, found := "", false
	for _, name := range names {
		for _, dir := range unitDirs {
			if b, err := readUnitFile(filepath.Join(root, dir, name)); err == nil {
				if v, ok := lastSetting(b, "Restart"); ok {
					restart = v
				}
				found = true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		return ""
	}
	// Drop-ins: every NAME.d/*.conf, in name order (later ones override).
	var dropins []string
	for _, name := range names {
		for _, dir := range unitDirs {
			d := filepath.Join(root, dir, name+".d")
			entries, _ := listDir(d)
			for _, e := range entries {
				if strings.HasSuffix(e, ".conf") {
					dropins = append(dropins, filepath.Join(d, e))
				}
			}
		}
	}
	sort.Slice(dropins, func(i, j int) bool { return filepath.Base(dropins[i]) < filepath.Base(dropins[j]) })
	for _, p := range dropins {
		if b, err := readUnitFile(p); err == nil {
			if v, ok := lastSetting(b, "Restart"); ok {
				restart = v
			}
		}
	}
	if restart == "" {
		return "no"
	}
	return restart
}

// readUnitFile reads a unit file or drop-in: a regular file (never a FIFO
// or device: opened non-blocking and checked), bounded.
func readUnitFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, maxUnitFileSize))
}

// lastSetting is the last value of key in a unit file's [Service] section;
// an empty assignment resets it.
func lastSetting(b []byte, key string) (string, bool) {
	value, found, section := "", false, ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if ok && strings.TrimSpace(k) == key {
				value, found = strings.TrimSpace(v), true
			}
		}
	}
	return value, found
}
