package main

import (
	"bytes"
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
)

// systemdRootfs is a Debian rootfs with systemd, nginx and logrotate, made
// once with mmdebstrap from Debian's packages and kept in the temp
// directory. One made before it had logrotate is made again.
func systemdRootfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "bindwatch-systemd-rootfs")
	complete := true
	for _, f := range []string{"usr/lib/systemd/systemd", "usr/sbin/logrotate"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			complete = false
		}
	}
	if complete {
		return dir
	}
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	out, err := exec.Command("mmdebstrap", "--variant=apt", "--include=systemd,systemd-sysv,dbus,nginx-light,logrotate", "bookworm", tmp).CombinedOutput()
	if err != nil {
		t.Fatalf("mmdebstrap bookworm: %v\n%s", err, out)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// bootSystemd boots rootfs with systemd as its pid 1 (systemd-nspawn -b,
// sharing the host's network) and returns that pid 1's host pid once the
// system is up. The container is powered off when the test ends.
func bootSystemd(t *testing.T, rootfs string) int {
	t.Helper()
	name := fmt.Sprintf("bwtest%d", os.Getpid())
	var console testenv.SyncBuffer
	// All capabilities and no seccomp filter of nspawn's own: the shipped
	// bindwatch.service loads BPF programs in it.
	cmd := exec.Command("systemd-nspawn", "-D", rootfs, "-b", "--register=no", "--keep-unit", "-M", name, "--console=pipe", "--capability=all")
	cmd.Env = append(os.Environ(), "SYSTEMD_SECCOMP=0")
	cmd.Stdout, cmd.Stderr = &console, &console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	// Outside a systemd unit, nspawn makes its own cgroups at the root of
	// the cgroup v2 hierarchy ("payload" for the container, "supervisor"
	// for itself): removed after it, when it made them.
	var made []string
	for _, mount := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		for _, d := range []string{"payload", "supervisor"} {
			if _, err := os.Stat(filepath.Join(mount, d)); os.IsNotExist(err) {
				made = append(made, filepath.Join(mount, d))
			}
		}
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // nspawn asks the container's systemd to halt
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		for _, d := range made {
			var dirs []string
			filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := syscall.Rmdir(dirs[i]); err != nil {
					t.Errorf("remove nspawn's cgroup %s: %v", dirs[i], err)
				}
			}
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("systemd-nspawn -b exited: %s", console.String())
		default:
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "systemd" {
				continue
			}
			out, _ := exec.Command("nsenter", "-t", f, "-a", "systemctl", "is-system-running").Output()
			if state := strings.TrimSpace(string(out)); state == "running" || state == "degraded" {
				return pid
			}
		}
	}
	t.Fatalf("systemd did not come up in the container within 90s: %s", console.String())
	return 0
}

// Under a real systemd as pid 1 (a Debian rootfs booted by systemd-nspawn
// -b): a Type=forking service (nginx) holds a port, and a second nginx
// started as another unit (systemd-run) fails on it. The failure names
// both units; the holder is the running instance of its unit, not a
// leftover, and the hint reloads or stops it through systemctl. bindwatch
// runs on the host, as the container shares its network.
//
// Then the shipped bindwatch.service runs in the container, and names the
// same holder the same way from there (its /proc, its pids). A real
// socket unit holds another port (ListenStream=127.0.0.1:PORT): a bind
// there fails, and the record names the .socket unit (socket_unit, from
// the container's own systemd, asked by bindwatch in the container) and
// stops it by name. bindwatch on the host, seeing that systemd as a
// container's manager, does not ask it.
//
// Then the shipped logrotate snippet, as /etc/logrotate.d/bindwatch, is
// run by the container's logrotate (forced): the rotated file keeps the
// records written before, and the next failure lands in the new file, as
// the postrotate's systemctl kill --signal=HUP made the service reopen it.
func TestUnitsUnderRealSystemd(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "a Debian rootfs booted with systemd as pid 1", "mmdebstrap", "systemd-nspawn", "nsenter")
	rootfs := systemdRootfs(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	sockPort := testenv.FreePort(t)
	for sockPort == port {
		sockPort = testenv.FreePort(t)
	}
	sp := strconv.Itoa(sockPort)
	files := map[string]string{
		"etc/nginx/bwsockfail.conf":         "pid /run/bwsockfail.pid;\nerror_log stderr;\nevents {}\nhttp { access_log off; server { listen 127.0.0.1:" + sp + "; } }\n",
		"etc/systemd/system/bwsock.socket":  "[Socket]\nListenStream=127.0.0.1:" + sp + "\n",
		"etc/systemd/system/bwsock.service": "[Service]\nExecStart=/bin/sleep infinity\n",
		"etc/nginx/bwtest.conf":             "pid /run/bwtest.pid;\nerror_log stderr;\nevents {}\nhttp { access_log off; server { listen 127.0.0.1:" + p + "; } }\n",
		"etc/nginx/bwfail.conf":             "pid /run/bwfail.pid;\nerror_log stderr;\nevents {}\nhttp { access_log off; server { listen 127.0.0.1:" + p + "; } }\n",
		"etc/systemd/system/bwtest.service": "[Service]\nType=forking\nPIDFile=/run/bwtest.pid\nExecStart=/usr/sbin/nginx -c /etc/nginx/bwtest.conf\nRestart=always\n",
	}
	for rel, text := range files {
		if err := os.WriteFile(filepath.Join(rootfs, rel), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The shipped unit, running the binary under test.
	unit, err := os.ReadFile("../../deploy/systemd/bindwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/systemd/system/bindwatch.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(bindwatchBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "usr/local/bin/bindwatch"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// The shipped logrotate snippet.
	snippet, err := os.ReadFile("../../deploy/systemd/bindwatch.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/logrotate.d/bindwatch"), snippet, 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(rootfs, "var/log/bindwatch/bindwatch.jsonl")
	old, _ := filepath.Glob(logFile + "*")
	for _, f := range append(old, filepath.Join(rootfs, "var/lib/logrotate/status")) {
		os.Remove(f)
	}
	// Only the test rotates, not Debian's daily logrotate.timer.
	os.Remove(filepath.Join(rootfs, "etc/systemd/system/logrotate.timer"))
	if err := os.Symlink("/dev/null", filepath.Join(rootfs, "etc/systemd/system/logrotate.timer")); err != nil {
		t.Fatal(err)
	}
	// Debian's own nginx.service would take the host's port 80.
	os.Remove(filepath.Join(rootfs, "etc/systemd/system/nginx.service"))
	if err := os.Symlink("/dev/null", filepath.Join(rootfs, "etc/systemd/system/nginx.service")); err != nil {
		t.Fatal(err)
	}
	pid1 := strconv.Itoa(bootSystemd(t, rootfs))
	in := func(args ...string) {
		out, err := exec.Command("nsenter", append([]string{"-t", pid1, "-a"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var failed []byte
	lines := runTraceUntil(t, func() {
		in("systemctl", "start", "bwtest.service")
		// Started with --no-block: its nginx retries for a few seconds.
		in("systemd-run", "--no-block", "--unit=bwfail", "/usr/sbin/nginx", "-c", "/etc/nginx/bwfail.conf", "-g", "daemon off;")
	}, func(lines [][]byte) bool {
		for _, l := range lines {
			if bytes.Contains(l, []byte(`"unit":"bwfail.service"`)) {
				failed = l
				return true
			}
		}
		return false
	}, "--port", p)
	schemaLines(t, lines)
	fs := failures(t, [][]byte{failed})
	if len(fs) != 1 {
		t.Fatalf("no failure of unit bwfail.service among:\n%s", bytes.Join(lines, []byte("\n")))
	}
	f := fs[0]
	t.Logf("under systemd: %s", failed)
	held := false
	for _, h := range f.Holders {
		for _, hp := range h.Processes {
			held = held || hp.Unit == "bwtest.service"
		}
	}
	if !held || f.Cause != "already_running" {
		t.Errorf("failure %s: want cause already_running, held by unit bwtest.service", failed)
	}
	for _, want := range []string{"systemctl reload bwtest.service", "systemctl stop bwtest.service"} {
		if !strings.Contains(f.Hint, want) {
			t.Errorf("hint %q: want %q", f.Hint, want)
		}
	}
	if strings.Contains(f.Hint, "SIGTERM") || strings.Contains(f.Hint, "kill") {
		t.Errorf("hint %q signals a unit's main process", f.Hint)
	}
	// The unit's nginx runs with its own -c: `nginx -s reload` would
	// signal the default configuration's master instead.
	if strings.Contains(f.Hint, "nginx -s") {
		t.Errorf("hint %q: nginx's own -s misses an nginx started with -c", f.Hint)
	}

	// The shipped unit under this systemd: systemctl start writes the
	// start record, a failure in another unit is logged with that unit,
	// systemctl stop leaves a stop record — with its hardening directives.
	// In the container's pid namespace, its /proc does not show the host
	// pids the kernel reports: holders are named among the processes it
	// shows, by their pids there.
	in("systemctl", "start", "bindwatch.service")
	logged := func(want string) [][]byte {
		t.Helper()
		for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			lines := readLines(logFile)
			for _, l := range lines {
				if bytes.Contains(l, []byte(want)) {
					return lines
				}
			}
		}
		out, _ := exec.Command("nsenter", "-t", pid1, "-a", "journalctl", "-u", "bindwatch", "--no-pager").CombinedOutput()
		t.Fatalf("%s: no record with %s within 3m:\n%s\njournal:\n%s", logFile, want, bytes.Join(readLines(logFile), []byte("\n")), out)
		return nil
	}
	logged(`"type":"start"`)
	in("systemd-run", "--no-block", "--unit=bwfail2", "/usr/sbin/nginx", "-c", "/etc/nginx/bwfail.conf", "-g", "daemon off;")
	inside := failureOf(t, logged(`"unit":"bwfail2.service"`), "bwfail2.service")
	// From inside, the holder is named by its pid there: the Type=forking
	// service's main process, told as its unit's, not as a leftover.
	held = false
	for _, h := range inside.Holders {
		for _, hp := range h.Processes {
			held = held || hp.Unit == "bwtest.service" && hp.Comm == "nginx"
		}
	}
	if !held || inside.Cause != "already_running" || !strings.Contains(inside.Hint, "systemctl stop bwtest.service") {
		t.Errorf("in the container: failure %+v: want cause already_running, held by nginx of unit bwtest.service, stopped with systemctl", inside)
	}

	// A socket unit holds a port; a bind on it fails. bindwatch in the
	// container asks its systemd, through its own systemctl, under the
	// shipped unit's hardening.
	in("systemctl", "start", "bwsock.socket")
	in("systemd-run", "--no-block", "--unit=bwsockfail", "/usr/sbin/nginx", "-c", "/etc/nginx/bwsockfail.conf", "-g", "daemon off;")
	sockLines := logged(`"unit":"bwsockfail.service"`)
	sf := failureOf(t, sockLines, "bwsockfail.service")
	named := false
	for _, h := range sf.Holders {
		for _, hp := range h.Processes {
			named = named || hp.PID == 1 && hp.Comm == "systemd" && hp.SocketUnit == "bwsock.socket"
		}
	}
	if !named || sf.Cause != "socket_activation" {
		t.Errorf("in the container: failure %+v: want cause socket_activation, held by pid 1 with socket_unit bwsock.socket", sf)
	}
	for _, want := range []string{"systemctl stop bwsock.socket", "systemctl disable bwsock.socket"} {
		if !strings.Contains(sf.Hint, want) {
			t.Errorf("in the container: hint %q: want %q", sf.Hint, want)
		}
	}
	for _, l := range sockLines {
		if bytes.Contains(l, []byte(`"unit":"bwsockfail.service"`)) {
			schemaLines(t, [][]byte{l})
			t.Logf("in the container, socket unit: %s", l)
			break
		}
	}

	// The shipped logrotate snippet, run by the container's logrotate:
	// the file is renamed to .1 (delaycompress), a new one created, and
	// the postrotate signals the service to reopen it. bindwatch on the
	// host sees every failure on it: the records before the rotation are
	// those logged up to now, and maybe a few more.
	before := readLines(logFile)
	in("logrotate", "-f", "/etc/logrotate.d/bindwatch")
	in("systemd-run", "--no-block", "--unit=bwfail3", "/usr/sbin/nginx", "-c", "/etc/nginx/bwfail.conf", "-g", "daemon off;")
	after := logged(`"unit":"bwfail3.service"`)
	rotated := readLines(logFile + ".1")
	if len(rotated) < len(before) {
		t.Fatalf("after logrotate, %s.1 has %d records, want the %d written before", logFile, len(rotated), len(before))
	}
	for i, l := range before {
		if !bytes.Equal(rotated[i], l) {
			t.Fatalf("after logrotate, %s.1 record %d is %s, want %s", logFile, i, rotated[i], l)
		}
	}
	for _, l := range rotated {
		if bytes.Contains(l, []byte(`"unit":"bwfail3.service"`)) {
			t.Errorf("the failure after logrotate went to the rotated file: %s", l)
		}
	}
	// (The nginx of bwfail2 and bwsockfail retry their binds for a few
	// seconds: their later failures may be in either file, each once.)
	inRotated := map[string]bool{}
	for _, l := range rotated {
		inRotated[string(l)] = true
	}
	for _, l := range after {
		if bytes.Contains(l, []byte(`"type":"start"`)) || inRotated[string(l)] {
			t.Errorf("a record from before logrotate is in the new file too: %s", l)
		}
	}
	failureOf(t, after, "bwfail3.service")
	if !bytes.Contains(rotated[0], []byte(`"type":"start"`)) {
		t.Errorf("%s.1 does not start with the start record", logFile)
	}

	in("systemctl", "stop", "bindwatch.service")
	// Every record it wrote matches the schema, failures with their
	// holders (named from its own /proc) included; the rotated file and
	// the new one together hold one start and one stop record, nothing
	// lost between them.
	logged(`"type":"stop"`)
	all := append(readLines(logFile+".1"), readLines(logFile)...)
	if seen := schemaLines(t, all); seen["start"] != 1 || seen["stop"] != 1 {
		t.Errorf("bindwatch.service wrote %v, want one start and one stop record", seen)
	}
	for _, unit := range []string{"bwfail2.service", "bwsockfail.service", "bwfail3.service"} {
		failureOf(t, all, unit)
	}
}

// failureOf is the first failure among lines of a process in unit.
func failureOf(t *testing.T, lines [][]byte, unit string) events.Failure {
	t.Helper()
	for _, f := range failures(t, lines) {
		if f.Process.Unit == unit {
			return f
		}
	}
	t.Fatalf("no failure of unit %s among:\n%s", unit, bytes.Join(lines, []byte("\n")))
	return events.Failure{}
}
