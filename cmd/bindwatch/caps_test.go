package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The capabilities README.md ("Install") and the not-privileged message
// give for each command, found by running bindwatch as root with only
// them (a systemd unit's CapabilityBoundingSet, a container's --cap-add):
// with each set the command does all it does as root — against a holder
// of another user (uid 65534) — and with any one capability fewer it does
// not. A capability added here, or one the code stops needing, fails the
// test until the README says so.
var commandCaps = []struct {
	name string
	// user: run as uid 65535 with the capabilities (ambient), not as root.
	user bool
	caps []string // setpriv's names
	// also are other sets that work as well (one capability standing for
	// others).
	also [][]string
	try  func(t *testing.T, capped func(args ...string) *exec.Cmd) error
}{
	{"trace", false, []string{"bpf", "perfmon", "sys_ptrace"}, [][]string{{"sys_admin", "sys_ptrace"}}, tryTrace},
	{"trace as a user", true, []string{"bpf", "perfmon", "sys_ptrace", "dac_read_search"}, nil, tryTrace},
	{"who", false, []string{"bpf", "perfmon", "sys_ptrace"}, [][]string{{"sys_admin", "sys_ptrace"}, {"dac_read_search", "sys_ptrace"}}, tryWho},
	{"free --kill", false, []string{"dac_read_search", "sys_ptrace", "kill", "net_admin"}, nil, tryFree},
}

func TestCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Require(t, "setpriv", "runs bindwatch with chosen capabilities (util-linux)")
	testenv.Tracefs(t) // the capabilities are those of a booted host, where it is mounted
	for _, c := range commandCaps {
		t.Run(c.name, func(t *testing.T) {
			withCaps := func(caps []string) func(args ...string) *exec.Cmd { return rootWithCaps(bindwatchBin, caps) }
			if c.user {
				bin := unprivileged(t).Path // a copy the user may run
				withCaps = func(caps []string) func(args ...string) *exec.Cmd { return userWithCaps(bin, caps) }
			}
			for _, set := range append([][]string{c.caps}, c.also...) {
				if err := c.try(t, withCaps(set)); err != nil {
					t.Errorf("with %s: %v", capNames(set), err)
				}
			}
			for _, drop := range c.caps {
				fewer := slices.DeleteFunc(slices.Clone(c.caps), func(c string) bool { return c == drop })
				err := c.try(t, withCaps(fewer))
				var refused notStarted
				switch {
				case err == nil:
					t.Errorf("with %s, without CAP_%s: it works as well; the README and the message ask for a capability it does not need", capNames(fewer), strings.ToUpper(drop))
				case errors.As(err, &refused) && (!strings.Contains(refused.stderr, "CAP_"+strings.ToUpper(drop)) || strings.Count(refused.stderr, "\n") != 1):
					t.Errorf("without CAP_%s, tracing is refused with a message that does not name it, in one line: %q", strings.ToUpper(drop), refused.stderr)
				default:
					t.Logf("without CAP_%s: %v", strings.ToUpper(drop), err)
				}
			}
		})
	}
}

func capNames(caps []string) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = "CAP_" + strings.ToUpper(c)
	}
	return strings.Join(names, ", ")
}

// rootWithCaps runs bin as root with only caps (setpriv --bounding-set:
// root's capabilities after exec are the bounding set).
func rootWithCaps(bin string, caps []string) func(args ...string) *exec.Cmd {
	return func(args ...string) *exec.Cmd {
		return exec.Command("setpriv", append([]string{"--bounding-set=" + capList(caps), "--inh-caps=-all", bin}, args...)...)
	}
}

// userWithCaps runs bin as uid 65535 with caps (ambient capabilities, as
// systemd's AmbientCapabilities= with User=).
func userWithCaps(bin string, caps []string) func(args ...string) *exec.Cmd {
	return func(args ...string) *exec.Cmd {
		return exec.Command("setpriv", append([]string{"--reuid=65535", "--regid=65535", "--clear-groups",
			"--inh-caps=" + capList(caps), "--ambient-caps=" + capList(caps), bin}, args...)...)
	}
}

// capList is setpriv's list of exactly caps.
func capList(caps []string) string {
	s := "-all"
	for _, c := range caps {
		s += ",+" + c
	}
	return s
}

// otherUsersHolder starts a process of uid 65534 listening on a free
// port, which it holds until the test ends (or it is stopped).
func otherUsersHolder(t *testing.T) (port int, h *testenv.HelperProc) {
	t.Helper()
	port = testenv.FreePort(t)
	return port, testenv.StartHelperAsUser(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", port), 65534)
}

// namedWithExe says what is missing from holders that should name pid
// with its executable.
func namedWithExe(holders []map[string]any, pid int) error {
	for _, h := range holders {
		procs, _ := h["processes"].([]any)
		for _, p := range procs {
			p, _ := p.(map[string]any)
			if int(p["pid"].(float64)) != pid {
				continue
			}
			if exe, _ := p["exe"].(string); exe == "" {
				return fmt.Errorf("the holder, pid %d, is named without its executable", pid)
			}
			return nil
		}
	}
	return fmt.Errorf("the holder, pid %d, is not named (holders %v)", pid, holders)
}

func holdersOf(rec map[string]any) []map[string]any {
	var hs []map[string]any
	list, _ := rec["holders"].([]any)
	for _, h := range list {
		if m, ok := h.(map[string]any); ok {
			hs = append(hs, m)
		}
	}
	return hs
}

// tryTrace traces a port another user's process holds, fails to bind it,
// and says what is wrong with the bind_failure record.
func tryTrace(t *testing.T, capped func(args ...string) *exec.Cmd) error {
	port, h := otherUsersHolder(t)
	dir, err := os.MkdirTemp("", "bindwatch-caps-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777) // for a user's bindwatch too
	ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out.jsonl")
	cmd := capped("--port", strconv.Itoa(port), "--format", "json", "--output", out, "--ready-file", ready, "--backend", testenv.Backend())
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		<-exited
	}()
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-exited:
			exited <- nil
			return notStarted{stderr.String()}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bindwatch neither ready nor gone after 10s: %s", stderr.String())
		}
	}
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	for deadline := time.Now().Add(testenv.StartTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, line := range readLines(out) {
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["type"] == "bind_failure" {
				return namedWithExe(holdersOf(rec), h.PID)
			}
		}
	}
	return errors.New("no bind_failure record within 3m")
}

// notStarted is tracing that did not start, and what it said.
type notStarted struct{ stderr string }

func (n notStarted) Error() string { return "tracing did not start: " + strings.TrimSpace(n.stderr) }

// tryWho asks who holds a port another user's process holds.
func tryWho(t *testing.T, capped func(args ...string) *exec.Cmd) error {
	port, h := otherUsersHolder(t)
	out, err := capped("who", strconv.Itoa(port)+"/tcp", "--format", "json").Output()
	if err != nil {
		return fmt.Errorf("who: %v", err)
	}
	var rec map[string]any
	if err := json.Unmarshal(out, &rec); err != nil {
		return fmt.Errorf("who: %v: %s", err, out)
	}
	return namedWithExe(holdersOf(rec), h.PID)
}

// tryFree stops another user's process holding a port, while a tracer
// (root, every capability) watches the port: the port must be freed, and
// free's own test binds must not be reported as failures.
func tryFree(t *testing.T, capped func(args ...string) *exec.Cmd) error {
	port, h := otherUsersHolder(t)
	p := strconv.Itoa(port)
	tr := startTracing(t, "--port", p, "--format", "json", "--output", filepath.Join(t.TempDir(), "trace.jsonl"))
	out, _ := capped("free", p+"/tcp", "--kill", "--grace", "3s", "--format", "json").Output()
	tr.stop(t)
	var problems []string
	var rec map[string]any
	if err := json.Unmarshal(out, &rec); err != nil {
		problems = append(problems, fmt.Sprintf("free wrote no record: %v: %q", err, out))
	} else if rec["free"] != true {
		problems = append(problems, fmt.Sprintf("the port was not freed: actions %v, blocked %v", rec["actions"], rec["blocked"]))
	}
	for _, line := range readLines(tr.cmd.Args[slices.Index(tr.cmd.Args, "--output")+1]) {
		var f map[string]any
		if json.Unmarshal(line, &f) == nil && f["type"] == "bind_failure" {
			if proc, _ := f["process"].(map[string]any); proc["comm"] == "bindwatch" {
				problems = append(problems, "free's test bind was reported as a failure by the tracer (it could not mark it)")
				break
			}
		}
	}
	h.Stop()
	if problems != nil {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
