package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// The man page is made from the command definitions (`bindwatch man`, run
// by make man): the checked-in docs/bindwatch.1 must be what the binary
// makes, and man renders it without a warning.
func TestManPage(t *testing.T) {
	made, err := exec.Command(bindwatchBin, "man").Output()
	if err != nil {
		t.Fatalf("bindwatch man: %v", err)
	}
	page := "../../docs/bindwatch.1"
	if in, _ := os.ReadFile(page); !bytes.Equal(in, made) {
		t.Errorf("docs/bindwatch.1 is not what `bindwatch man` makes from the command definitions (hint: make man)")
	}
	testenv.Require(t, "man", "renders the man page (apt-get install man-db)")
	cmd := exec.Command("man", "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=250", "MANPAGER=cat", "PAGER=cat")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("man --warnings -l docs/bindwatch.1: %v, warnings:\n%s", err, stderr.String())
	}
	// Every visible command, and flags of both bindwatch and a command.
	for _, want := range []string{"bindwatch who [FLAGS] PORT[/tcp|/udp]...", "bindwatch completion", "--quiet, -q", "--no-hints", "--kill", "environment BINDWATCH_PORT", "Exit status", "free [FLAGS]"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the rendered man page lacks %q", want)
		}
	}
	if strings.Contains(stdout.String(), "bindwatch man") {
		t.Errorf("the man page lists the hidden man command")
	}
}

// completeBash runs _bindwatch, as bash's programmable completion does,
// for the words of line (a trailing space starts a new, empty word) in a
// real bash that sourced the script, and returns the candidates.
func completeBash(t *testing.T, script, line string) []string {
	t.Helper()
	words := strings.Fields(line)
	if strings.HasSuffix(line, " ") {
		words = append(words, "")
	}
	cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", `source "$0" || exit 9
fn=$(complete -p bindwatch | sed -n 's/.*-F \([^ ]*\).*/\1/p')
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$fn" bindwatch "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`, script}, words...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completing %q: %v\n%s", line, err, out)
	}
	var got []string
	for _, w := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if w != "" {
			got = append(got, w)
		}
	}
	return got
}

// Shell completion: the bash script, sourced in a real bash, completes
// commands, each command's own flags (not another's) and flag values; at
// an interactive bash on a terminal, `bindwatch wh<TAB>` and a flag
// complete for real. The zsh and fish scripts name the same.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "bindwatch.bash")
	out, err := exec.Command(bindwatchBin, "completion", "bash").Output()
	if err != nil {
		t.Fatalf("completion bash: %v", err)
	}
	os.WriteFile(script, out, 0o644)
	if b, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, b)
	}
	for _, c := range []struct {
		line      string
		want, not []string
	}{
		{"bindwatch wh", []string{"who"}, []string{"wait-free"}},
		{"bindwatch w", []string{"who", "wait-free"}, nil},
		{"bindwatch --po", []string{"--port"}, nil},
		{"bindwatch who 8080 --for", []string{"--format"}, nil},
		{"bindwatch who 8080 --", []string{"--all-netns", "--format", "--help"}, []string{"--kill", "--port"}},
		{"bindwatch free 8080 --ki", []string{"--kill"}, nil},
		{"bindwatch who --format ", []string{"ecs", "json", "text"}, []string{"who"}},
		{"bindwatch --backend t", []string{"tracepoint"}, nil},
		{"bindwatch --quiet --port 80 ", []string{"who", "run", "completion"}, []string{"man"}},
		{"bindwatch completion ", []string{"bash", "fish", "zsh"}, nil},
		{"bindwatch run -- ls --", nil, []string{"--fail-on-conflict"}},
	} {
		got := completeBash(t, script, c.line)
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("completing %q: %q, want %q among them", c.line, got, w)
			}
		}
		for _, w := range c.not {
			if slices.Contains(got, w) {
				t.Errorf("completing %q: %q, want no %q", c.line, got, w)
			}
		}
	}

	t.Run("interactive bash", func(t *testing.T) {
		ctrl, term := openCookedPTY(t)
		bin := filepath.Join(dir, "bin")
		os.Mkdir(bin, 0o755)
		os.Symlink(bindwatchBin, filepath.Join(bin, "bindwatch"))
		sh := exec.Command("bash", "--norc", "--noprofile", "-i")
		sh.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "PS1=$ ", "TERM=dumb", "INPUTRC=/dev/null")
		sh.Stdin, sh.Stdout, sh.Stderr = term, term, term
		sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := sh.Start(); err != nil {
			t.Fatal(err)
		}
		term.Close()
		defer func() { sh.Process.Kill(); sh.Wait() }()
		var seen bytes.Buffer
		var seenMu sync.Mutex
		got := make(chan struct{}, 1)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := ctrl.Read(buf)
				if n > 0 {
					seenMu.Lock()
					seen.Write(buf[:n])
					seenMu.Unlock()
					select {
					case got <- struct{}{}:
					default:
					}
				}
				if err != nil {
					return
				}
			}
		}()
		waitFor := func(want string) bool {
			deadline := time.After(10 * time.Second)
			for {
				seenMu.Lock()
				ok := strings.Contains(seen.String(), want)
				seenMu.Unlock()
				if ok {
					return true
				}
				select {
				case <-got:
				case <-deadline:
					return false
				}
			}
		}
		if !waitFor("$ ") {
			t.Fatalf("no prompt from bash -i:\n%s", seen.String())
		}
		ctrl.Write([]byte("source " + script + "; echo sourced-$?\n"))
		if !waitFor("sourced-0") {
			t.Fatalf("bash did not source the script:\n%s", seen.String())
		}
		ctrl.Write([]byte("bindwatch wh\t"))
		if !waitFor("bindwatch who ") {
			t.Errorf("bindwatch wh<TAB> did not complete to `bindwatch who `:\n%q", seen.String())
		}
		ctrl.Write([]byte("8080 --for\t"))
		if !waitFor("bindwatch who 8080 --format ") {
			t.Errorf("bindwatch who 8080 --for<TAB> did not complete to --format:\n%q", seen.String())
		}
		ctrl.Write([]byte("\x15exit\n"))
	})

	for _, shell := range []string{"zsh", "fish"} {
		out, err := exec.Command(bindwatchBin, "completion", shell).Output()
		if err != nil {
			t.Fatalf("completion %s: %v", shell, err)
		}
		for _, want := range []string{"who", "wait-free", "completion", "format", "all-netns", "kill"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("completion %s does not name %q", shell, want)
			}
		}
	}
	code, stderr := run(t, exec.Command(bindwatchBin, "completion", "tcsh"))
	if code != 2 || !strings.Contains(stderr, `completion "tcsh": the shells are bash, zsh and fish`) {
		t.Errorf("completion tcsh: exit %d, %q; want a usage error", code, stderr)
	}
}

// openCookedPTY opens a pseudo-terminal as a shell gets one (line
// discipline as the kernel sets it up), unlike openPTY's raw one.
func openCookedPTY(t *testing.T) (ctrl, term *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	ctrl = os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { ctrl.Close() })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	term, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ctrl, term
}
