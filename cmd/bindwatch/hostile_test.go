package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// hostileComm is a comm as any process can set it with prctl(PR_SET_NAME),
// 15 bytes: clear screen, an OSC window title ended by BEL, C1 CSI as
// UTF-8, CR LF, and a byte that is not UTF-8.
const hostileComm = "\x1b[2J\x1b]0;X\x07\xc2\x9b\r\n\xff"

// hostileArgs is a command line that tries every way to write into an
// operator's terminal, and 100 KB of it.
func hostileArgs() []string {
	return []string{"\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "ok\r\n09:00:00.000 EADDRINUSE forged line", "\xc2\x9b31mred",
		"bad\xff\xfeutf8", `back\slash`, "del\x7f", strings.Repeat("A", 100_000)}
}

// hostileJob is job done by a process named hostileComm.
func hostileJob(job string) string {
	return "named " + hex.EncodeToString([]byte(hostileComm)) + " " + job
}

// hostileCmd is a helper doing job as a hostile process: hostileComm, and
// hostileArgs after an argv[0] that is itself an escape sequence.
func hostileCmd(job string) *exec.Cmd {
	cmd := testenv.Helper(hostileJob(job))
	cmd.Args = append([]string{"\x1b[1;1H\x1b[2Kevil", "-test.run=^$"}, hostileArgs()...)
	return cmd
}

// checkTerminalSafe fails unless out — what bindwatch wrote to a terminal
// — is valid UTF-8 whose only control character is the newline, and shows
// the hostile comm escaped (so the hostile process really was there).
func checkTerminalSafe(t *testing.T, what string, out []byte) {
	t.Helper()
	checkNoControls(t, what, out)
	if want := events.Escape(hostileComm); !bytes.Contains(out, []byte(want)) {
		t.Errorf("%s: the hostile comm, escaped (%s), is not shown:\n%s", what, want, clip(out))
	}
}

// checkNoControls fails unless out is valid UTF-8 whose only control
// character is the newline.
func checkNoControls(t *testing.T, what string, out []byte) {
	t.Helper()
	if !utf8.Valid(out) {
		t.Errorf("%s: output is not valid UTF-8:\n%q", what, clip(out))
	}
	for i, r := range string(out) {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) {
			t.Errorf("%s: raw control character %U at byte %d:\n%q", what, r, i, clip(out[max(0, i-200):]))
			break
		}
	}
}

// checkJSONSafe fails unless every line of out parses as JSON, holds no raw
// control character, and some process in it has the hostile comm (with
// its invalid byte as U+FFFD).
func checkJSONSafe(t *testing.T, what string, out []byte) {
	t.Helper()
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if i := bytes.IndexFunc(line, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }); i >= 0 || !utf8.Valid(line) {
			t.Errorf("%s: raw control character or invalid UTF-8 in a JSON line: %q", what, clip(line))
		}
		var doc any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Errorf("%s: not JSON: %v: %q", what, err, clip(line))
			continue
		}
		walkJSON(doc, func(m map[string]any) {
			if m["comm"] == strings.ToValidUTF8(hostileComm, "\uFFFD") {
				found = true
			}
		})
	}
	if !found {
		t.Errorf("%s: no process with the hostile comm in\n%s", what, clip(out))
	}
}

func clip(b []byte) string {
	if len(b) > 3000 {
		return string(b[:3000]) + "…"
	}
	return string(b)
}

// openPTY opens a pseudo-terminal in raw mode: what a program writes to
// the returned terminal side is read unchanged from the controller side.
func openPTY(t *testing.T) (ctrl, term *os.File) {
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
	tio, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST // no \n → \r\n: read exactly what was written
	tio.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
	if err := unix.IoctlSetTermios(int(term.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	return ctrl, term
}

// onTerminal runs bindwatch ARGS with standard output and error on a
// pseudo-terminal, calls during (if any) while it runs, waits for it to
// exit and returns all it wrote there.
func onTerminal(t *testing.T, during func(*exec.Cmd), args ...string) []byte {
	t.Helper()
	ctrl, term := openPTY(t)
	cmd := exec.Command(bindwatchBin, args...)
	cmd.Stdout, cmd.Stderr = term, term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.Close() // ours: reading ends when bindwatch's copies close
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 64<<10)
		for {
			n, err := ctrl.Read(buf)
			b.Write(buf[:n])
			if err != nil { // EIO once the terminal side is closed
				got <- b.Bytes()
				return
			}
		}
	}()
	if during != nil {
		during(cmd)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("bindwatch %q still running after a minute", args)
	}
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatalf("bindwatch %q exited, but its terminal is still open", args)
		return nil
	}
}

// A hostile holder and a hostile failing process — comm set with
// PR_SET_NAME and argv full of terminal escapes, CR/LF, C1 CSI, invalid
// UTF-8 and 100 KB — through the tracer, who, free, wait-free and run: on
// a terminal no control character is written (everything is escaped by
// the one rule), and every JSON line parses and holds none.
func TestHostileProcessesCannotWriteToTheTerminal(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	startHolder(t, hostileCmd("hold tcp 127.0.0.1 "+p))
	fail := func() {
		cmd := hostileCmd("bind tcp 127.0.0.1 " + p)
		if err := cmd.Run(); cmd.ProcessState.ExitCode() != int(syscall.EADDRINUSE) {
			t.Errorf("failing helper: %v, want exit %d (EADDRINUSE)", err, syscall.EADDRINUSE)
		}
	}

	t.Run("trace text", func(t *testing.T) {
		ready := filepath.Join(t.TempDir(), "ready")
		out := onTerminal(t, func(cmd *exec.Cmd) {
			testenv.WaitForReady(t, ready, cmd.Process, func() string { return "" })
			// One process failing again and again: a failure line, then
			// a repeats line (folded in the kernel), each naming it.
			if err := hostileCmd("storm tcp 127.0.0.1 " + p + " 5").Run(); err != nil {
				t.Errorf("storm helper: %v", err)
			}
			time.Sleep(1500 * time.Millisecond) // a tick of the 1s fold window
			cmd.Process.Signal(syscall.SIGINT)
		}, "--port", p, "--backend", testenv.Backend(), "--ready-file", ready, "--fold", "1s")
		checkTerminalSafe(t, "trace", out)
		for _, want := range []string{"EADDRINUSE bind tcp 127.0.0.1:" + p, "failed the same way 4 more times"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("trace: no %q line:\n%s", want, clip(out))
			}
		}
	})
	t.Run("trace json", func(t *testing.T) {
		lines := runTrace(t, fail, "--port", p, "--format", "json")
		checkJSONSafe(t, "trace", bytes.Join(lines, []byte("\n")))
	})
	for _, args := range [][]string{{"who", p + "/tcp"}, {"free", p + "/tcp"}, {"wait-free", p + "/tcp", "--timeout", "0"}} {
		t.Run(args[0]+" text", func(t *testing.T) {
			checkTerminalSafe(t, args[0], onTerminal(t, nil, args...))
		})
		t.Run(args[0]+" json", func(t *testing.T) {
			res := bindwatch(t, append(args, "--format", "json")...)
			checkNoControls(t, args[0]+" stderr", []byte(res.stderr))
			checkJSONSafe(t, args[0], []byte(res.stdout))
		})
	}
	// run's CMD is the failing helper itself: hostile comm and argv.
	t.Setenv("BINDWATCH_TEST_HELPER", hostileJob("bind tcp 127.0.0.1 "+p))
	run := func(args ...string) []string {
		return append(append([]string{"run", "--backend", testenv.Backend(), "--port", p}, args...),
			append([]string{"--", os.Args[0], "-test.run=^$"}, hostileArgs()...)...)
	}
	t.Run("run text", func(t *testing.T) {
		checkTerminalSafe(t, "run", onTerminal(t, nil, run()...))
	})
	t.Run("run json", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		res := bindwatch(t, run("--format", "json", "--output", out)...)
		checkTerminalSafe(t, "run summary", []byte(res.stderr))
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		checkJSONSafe(t, "run", b)
	})
}
