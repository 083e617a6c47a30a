package main

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// run runs the bindwatch binary and returns its exit code and stderr.
func run(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// Mistakes in how bindwatch is called exit 2 with a message naming the
// mistake, before anything is loaded into the kernel.
func TestUsageErrors(t *testing.T) {
	noPID := 999999 // issue 8's example, or the next pid nothing has
	for syscall.Kill(noPID, 0) != syscall.ESRCH {
		noPID++
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", "70000"}, `"70000" is not a port`},
		{[]string{"--port", "9000-8000"}, "empty"},
		{[]string{"--errno", "ENOENT"}, "unknown error"},
		{[]string{"--format", "xml"}, `--format "xml"`},
		{[]string{"--redact", "("}, `--redact "(": not a regular expression`},
		{[]string{"--redact", "x*"}, "matches the empty string"},
		{[]string{"--redact", "x", "--no-redact"}, "contradict"},
		{[]string{"who", "80", "--redact", "("}, `--redact "(": not a regular expression`},
		{[]string{"--backend", "magic"}, "unknown backend"},
		{[]string{"--follow-children"}, "needs --pid"},
		{[]string{"--ring-size", "1000"}, "power of two"},
		// A power of two, but under a page: the kernel's ring buffer
		// holds at least one.
		{[]string{"--ring-size", strconv.Itoa(os.Getpagesize() / 2)}, "power of two of at least " + strconv.Itoa(os.Getpagesize()) + " bytes"},
		// Issue 8, item 7: each bad value says what is wrong with it.
		{[]string{"--ring-size", "4294967296"}, "more than the 268435456 (256 MiB)"},
		{[]string{"--ring-size", "2147483648"}, "more than the 268435456 (256 MiB)"},
		{[]string{"--ring-size", "0"}, "--ring-size 0: the ring buffer cannot be empty"},
		{[]string{"--port", "-1"}, "--port -1: a port is never negative"},
		{[]string{"--port", "80-"}, "--port 80-: the range has no high port"},
		{[]string{"--fold", "abc"}, "--fold abc: not understood (want a duration"},
		{[]string{"--backend", "bogus"}, `unknown backend "bogus" (want one of auto, fentry, kprobe, tracepoint)`},
		{[]string{"--pid", strconv.Itoa(noPID)}, "--pid " + strconv.Itoa(noPID) + ": no such process"},
		{[]string{"--pid", "abc"}, "--pid abc: not understood (want a process id"},
		{[]string{"doctor", "bogus"}, `doctor takes no arguments, got "bogus"`},
		{[]string{"--comm", "a-very-long-command-name"}, "15 bytes"},
		{[]string{"--unit", "system.slice"}, "--unit system.slice: only a service, scope or socket has processes"},
		{[]string{"--unit", "a/b.service"}, "--unit a/b.service: a user's unit is user@UID.service/NAME"},
		{[]string{"--unit", "user@1000.service/x\x1b.service"}, `not a unit name`},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		// Issue 20: every usage error is one line and where to read more,
		// unknown flags of commands, flags of another command included.
		{[]string{"8080"}, "to trace failures on port 8080, `bindwatch --port 8080`; to see who holds it, `bindwatch who 8080`"},
		{[]string{"8080/tcp"}, "`bindwatch who 8080/tcp`"},
		{[]string{"whos"}, "did you mean `bindwatch who`?"},
		{[]string{"--format", "json", "wait-fre", "80"}, "did you mean `bindwatch wait-free`?"},
		{[]string{"nosuchcommand"}, `unknown command "nosuchcommand" (commands: who, run`},
		{[]string{"who", "8080", "--kill"}, "--kill is a flag of `bindwatch free`, not of `bindwatch who`"},
		{[]string{"who", "--kill", "8080"}, "--kill is a flag of `bindwatch free`, not of `bindwatch who`"},
		{[]string{"free", "8080", "--timeout", "5s"}, "--timeout is a flag of `bindwatch wait-free`, not of `bindwatch free`"},
		{[]string{"who", "8080", "--port", "80"}, "--port is a flag of `bindwatch`, `bindwatch run` and `bindwatch report`, not of `bindwatch who`"},
		{[]string{"--kill"}, "--kill is a flag of `bindwatch free`, not of `bindwatch`"},
		{[]string{"report", "--nope"}, "unknown flag --nope"},
		{[]string{"--prot", "80"}, "unknown flag --prot (did you mean --port?)"},
		{[]string{"who", "8080", "--format"}, "--format needs a value"},
		{[]string{"--port"}, "--port needs a value"},
		{[]string{"doctor", "--format"}, "--format needs a value"},
		{[]string{"--metrics-port-label"}, "needs --metrics-addr"},
		{[]string{"--syslog", "syslog.example:514"}, "unknown scheme"},
		{[]string{"--syslog", "tcp://nohostport"}, "HOST:PORT"},
		{[]string{"--metrics-addr", "127.0.0.1:9851", "--metrics-port-label"}, "needs --port"},
		{[]string{"--metrics-addr", "9851"}, "HOST:PORT"},
		{[]string{"--output-max-size", "10M"}, "needs --output"},
		{[]string{"--output", "/dev/null", "--output-max-size", "ten"}, "not a size"},
		{[]string{"--output", "/dev/null", "--output-max-files", "3"}, "need --output-max-size"},
		{[]string{"--output", "/dev/null", "--output-compress"}, "need --output-max-size"},
	} {
		code, stderr := run(t, exec.Command(bindwatchBin, c.args...))
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("bindwatch %v: exit %d, stderr %q; want exit 2 and %q", c.args, code, stderr, c.want)
		}
		checkUsageError(t, c.args, stderr)
	}
}

// checkUsageError checks that a usage error is written as one line, then
// where to read how the command is used: "see `bindwatch who --help`".
func checkUsageError(t *testing.T, args []string, stderr string) {
	t.Helper()
	cmd := "bindwatch"
	for _, a := range args {
		if slices.Contains([]string{"who", "run", "wait-free", "free", "doctor", "report"}, a) {
			cmd += " " + a
			break
		}
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], cmd+": ") || lines[1] != "see `"+cmd+" --help`" {
		t.Errorf("bindwatch %v: stderr %q; want one line \"%s: …\", then \"see `%s --help`\"", args, stderr, cmd, cmd)
	}
}

// Flags may come before or after the arguments, and a usage error is
// never the help page.
func TestFlagsAnywhere(t *testing.T) {
	port := strconv.Itoa(testenv.FreePort(t))
	for _, args := range [][]string{
		{"who", port + "/tcp", "--format", "json"},
		{"who", "--format", "json", port + "/tcp"},
		{"who", "--format=json", port + "/tcp"},
	} {
		cmd := exec.Command(bindwatchBin, args...)
		var stdout strings.Builder
		cmd.Stdout = &stdout
		code, stderr := run(t, cmd)
		if code != 1 || !strings.HasPrefix(stdout.String(), `{"type":"who"`) || strings.Contains(stderr, "USAGE") {
			t.Errorf("bindwatch %v: exit %d, stdout %q, stderr %q; want exit 1 (free) and a JSON who record", args, code, stdout.String(), stderr)
		}
	}
}

// Without privileges tracing does not start: one sentence, exit 1.
func TestNotRoot(t *testing.T) {
	code, stderr := run(t, unprivileged(t, "--format", "json"))
	if code != 1 || !strings.Contains(stderr, "needs root") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("unprivileged bindwatch: exit %d, stderr %q; want exit 1 and one line saying it needs root", code, stderr)
	}
}

// unprivileged is the bindwatch binary run as uid 65534 with args, from a
// copy that user can execute (go test builds it where only root may go).
func unprivileged(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	testenv.RequireRoot(t) // to drop to an unprivileged user
	dir, err := os.MkdirTemp("", "bindwatch-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := dir + "/bindwatch"
	b, _ := os.ReadFile(bindwatchBin)
	os.WriteFile(bin, b, 0o755)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// doctor as a user blames the missing privileges, not the kernel (issue 8:
// "this kernel, before 5.11" on 6.18).
func TestDoctorNotRoot(t *testing.T) {
	cmd := unprivileged(t, "doctor")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	code, stderr := run(t, cmd)
	out := stdout.String() + stderr
	if code != 1 || strings.Contains(out, "5.11") || strings.Count(out, "tracing needs root") < 3 {
		t.Errorf("unprivileged doctor: exit %d; want exit 1, every backend saying it needs root, no kernel blamed:\n%s", code, out)
	}
}

// who as a user does not say "no process has it open" of a socket root's
// process has open: it says it cannot see other users' processes.
func TestWhoNotRoot(t *testing.T) {
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	cmd := unprivileged(t, "who", strconv.Itoa(port)+"/tcp", "--format", "text")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	code, _ := run(t, cmd)
	if code != 0 || strings.Contains(stdout.String(), "no process has it open") || !strings.Contains(stdout.String(), "visible only to root") {
		t.Errorf("unprivileged who on root's port: exit %d; want exit 0, saying other users' processes are visible only to root:\n%s", code, stdout.String())
	}
	cmd = unprivileged(t, "who", strconv.Itoa(port)+"/tcp", "--format", "json")
	stdout.Reset()
	cmd.Stdout = &stdout
	run(t, cmd)
	if !strings.Contains(stdout.String(), `"partial_view":true`) {
		t.Errorf("unprivileged who --format json: no partial_view: %s", stdout.String())
	}
}

// Tracing flags can be set from the environment (BINDWATCH_ and the flag's
// name), for bindwatch and bindwatch run alike; values from there are
// checked like flags.
func TestFlagsFromEnvironment(t *testing.T) {
	for _, c := range []struct {
		env  string
		args []string
		want string
	}{
		{"BINDWATCH_PORT=80,70000", nil, `"70000" is not a port`},
		{"BINDWATCH_FORMAT=xml", nil, `--format "xml"`},
		{"BINDWATCH_OUTPUT_MAX_SIZE=1K", []string{"--output", "/dev/null"}, "too small"},
		{"BINDWATCH_RING_SIZE=abc", nil, "BINDWATCH_RING_SIZE"},
		{"BINDWATCH_FORMAT=yaml", []string{"run", "--", "true"}, `--format "yaml"`},
		// who does not parse the tracing flags (leanFor), but still
		// refuses a value of theirs it cannot parse, as before.
		{"BINDWATCH_RING_SIZE=abc", []string{"who", "8080"}, "BINDWATCH_RING_SIZE"},
		{"BINDWATCH_FOLD=zz", []string{"who", "8080"}, `"zz" as duration value from environment variable "BINDWATCH_FOLD"`},
	} {
		cmd := exec.Command(bindwatchBin, c.args...)
		cmd.Env = append(os.Environ(), c.env)
		code, stderr := run(t, cmd)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s bindwatch %v: exit %d, stderr %q; want exit 2 and %q", c.env, c.args, code, stderr, c.want)
		}
	}
	out, _ := exec.Command(bindwatchBin, "--help").Output()
	for _, env := range []string{"$BINDWATCH_OUTPUT", "$BINDWATCH_OUTPUT_MAX_SIZE", "$BINDWATCH_PORT"} {
		if !strings.Contains(string(out), env) {
			t.Errorf("--help does not name %s", env)
		}
	}
}
