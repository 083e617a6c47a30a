package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

// tracing is a bindwatch tracer started by a test.
type tracing struct {
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
}

// startTracing starts `bindwatch ARGS...` and returns once its ready file
// is there.
func startTracing(t *testing.T, args ...string) *tracing {
	t.Helper()
	return startTracingIn(t, nil, args...)
}

// startTracingIn is startTracing for `PREFIX... bindwatch ARGS...`, where
// prefix is a command that execs its arguments (prlimit, setpriv).
func startTracingIn(t *testing.T, prefix []string, args ...string) *tracing {
	t.Helper()
	testenv.RequireRoot(t)
	ready := filepath.Join(t.TempDir(), "ready")
	argv := append(append(append([]string{}, prefix...), bindwatchBin), append(args, "--backend", testenv.Backend(), "--ready-file", ready)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	tr := &tracing{cmd: cmd, stderr: &testenv.SyncBuffer{}}
	cmd.Stderr = tr.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	testenv.WaitForReady(t, ready, cmd.Process, tr.stderr.String)
	return tr
}

// stop stops the tracer with SIGINT and fails the test unless it exits 0.
func (tr *tracing) stop(t *testing.T) {
	t.Helper()
	tr.cmd.Process.Signal(syscall.SIGINT)
	if err := tr.cmd.Wait(); err != nil {
		t.Fatalf("bindwatch exited with %v: %s", err, tr.stderr.String())
	}
}

// storm makes failing binds (EADDRINUSE) on a held port from a goroutine,
// about perSecond of them, counting each.
type storm struct {
	n    atomic.Uint64
	quit chan struct{}
	done chan struct{}
}

func startStorm(t *testing.T, port, perSecond int) *storm {
	t.Helper()
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	s := &storm{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
			for range perSecond / 100 {
				fd, err := testenv.Socket("tcp", "127.0.0.1", testenv.Opts{})
				if err != nil {
					continue
				}
				if testenv.Bind(fd, "127.0.0.1", port) == unix.EADDRINUSE {
					s.n.Add(1)
				}
				unix.Close(fd)
			}
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

// stop ends the storm and returns how many binds failed.
func (s *storm) stop() uint64 {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
	return s.n.Load()
}

// tally is what a set of JSON-lines files says.
type tally struct {
	failures     uint64 // in bind_failure, repeats and lost records
	outputLost   uint64 // failures in output_lost records
	lostRecords  uint64 // records in output_lost records
	starts       int
	stops        []map[string]any
	recordsByTyp map[string]int
}

// tallyFiles reads files as JSON lines: every line must be one whole
// record matching docs/schema.json (the first 100 of each type), with no
// NUL bytes (a hole left by writing past a truncation).
func tallyFiles(t *testing.T, files ...string) tally {
	t.Helper()
	tl := tally{recordsByTyp: map[string]int{}}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 {
			t.Errorf("%s holds NUL bytes: a write went past a truncation", name)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends in a cut line: %q", name, b[max(0, len(b)-100):])
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: a line is not a whole record (%v): %q", name, err, sc.Text())
			}
			typ, _ := r["type"].(string)
			if tl.recordsByTyp[typ]++; tl.recordsByTyp[typ] <= 100 { // a storm's records are alike
				if err := recordSchema().Validate(any(r)); err != nil {
					t.Errorf("%s: a line does not match docs/schema.json: %v\n%.2000s", name, err, sc.Text())
				}
			}
			count := func(k string) uint64 { f, _ := r[k].(float64); return uint64(f) }
			switch typ {
			case "bind_failure":
				tl.failures++
			case "repeats", "lost":
				tl.failures += count("count")
			case "output_lost":
				tl.outputLost += count("failures")
				tl.lostRecords += count("records")
			case "start":
				tl.starts++
			case "stop":
				tl.stops = append(tl.stops, r)
			}
		}
	}
	return tl
}

// accounted checks that every provoked failure is in the files: as a
// record, or counted in one (repeats, lost, output_lost, the stop's
// unread), and that the one stop record says so.
func (tl tally) accounted(t *testing.T, provoked uint64) map[string]any {
	t.Helper()
	if tl.starts != 1 || len(tl.stops) != 1 {
		t.Fatalf("%d start and %d stop records, want one each (records: %v)", tl.starts, len(tl.stops), tl.recordsByTyp)
	}
	t.Logf("provoked %d; records %v; output_lost failures %d; stop %v", provoked, tl.recordsByTyp, tl.outputLost, tl.stops)
	stop := tl.stops[0]
	if f := uint64(stop["failures"].(float64)); f != provoked {
		t.Errorf("stop says %d failures, the test provoked %d", f, provoked)
	}
	// unread: still queued when the stop's time was up (counted in stop only).
	unread := uint64(stop["unread"].(float64))
	if tl.failures+tl.outputLost+unread != provoked {
		t.Errorf("the files account for %d failures (%d in records, %d output_lost, %d unread), the test provoked %d (records: %v)",
			tl.failures+tl.outputLost+unread, tl.failures, tl.outputLost, unread, provoked, tl.recordsByTyp)
	}
	if got := uint64(stop["output_lost_failures"].(float64)); got != tl.outputLost {
		t.Errorf("stop says output_lost_failures %d, the output_lost records %d", got, tl.outputLost)
	}
	return stop
}

// writtenFailures counts the failures JSON-lines files account for so
// far: one per bind_failure record, count in repeats and lost records.
func writtenFailures(files []string) uint64 {
	var n uint64
	for _, name := range files {
		b, _ := os.ReadFile(name)
		for l := range bytes.Lines(b) {
			var r struct {
				Type  string
				Count uint64
			}
			if json.Unmarshal(l, &r) != nil {
				continue
			}
			switch r.Type {
			case "bind_failure":
				n++
			case "repeats", "lost":
				n += r.Count
			}
		}
	}
	return n
}

// rotatedFiles lists base.N … base.1, base (oldest first) that exist.
func rotatedFiles(base string) []string {
	var files []string
	for i := 100; i >= 1; i-- {
		if _, err := os.Stat(base + "." + strconv.Itoa(i)); err == nil {
			files = append(files, base+"."+strconv.Itoa(i))
		}
	}
	return append(files, base)
}

// logrotate runs the real logrotate once, forced, with a config rotating
// path in the given mode ("create" or "copytruncate") and a postrotate
// that sends SIGHUP to pid.
func logrotate(t *testing.T, path, mode string, pid int) {
	t.Helper()
	dir := filepath.Dir(path)
	conf := filepath.Join(dir, "logrotate.conf")
	if _, err := os.Stat(conf); err != nil {
		body := fmt.Sprintf("%s {\n\trotate 1000\n\t%s\n\tnocompress\n\tmissingok\n\tpostrotate\n\t\tkill -HUP %d\n\tendscript\n}\n", path, mode, pid)
		if mode == "create" {
			body = strings.Replace(body, "create", "create 0640 root root", 1)
		}
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("logrotate", "-f", "-s", filepath.Join(dir, "logrotate.state"), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v: %s", err, out)
	}
}

// A week of logrotate compressed: logrotate's usual postrotate `kill -HUP`
// (it used to kill bindwatch) reopens the output, with `create`, every
// second for 30 s during a storm of failures. Every failure is accounted
// across the rotated files, every line is whole, no file is empty.
func TestLogrotateCreate(t *testing.T) {
	testenv.Require(t, "logrotate", "a real logrotate rotates the file")
	dir := t.TempDir()
	out := filepath.Join(dir, "bindwatch.jsonl")
	port := testenv.FreePort(t)
	// Its own namespace's failures only: the storm counts its own, and
	// another test program's on the same number elsewhere would be more.
	tr := startTracing(t, "--output", out, "--fold", "0", "--port", strconv.Itoa(port), "--netns", ownNetns())
	st := startStorm(t, port, 1000)
	const rotations = 30
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range rotations {
		<-tick.C
		logrotate(t, out, "create", tr.cmd.Process.Pid)
		// The next rotation once bindwatch has reopened the file and
		// written to it (the storm goes on): a loaded machine may take
		// longer than the tick, and rotating the still empty file again
		// would leave an empty file no fault of bindwatch's.
		for deadline := time.Now().Add(recordsTimeout); ; time.Sleep(10 * time.Millisecond) {
			if st, err := os.Stat(out); err == nil && st.Size() > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still empty %v after its rotation: %s", out, recordsTimeout, tr.stderr.String())
			}
		}
	}
	provoked := st.stop()
	// Stop once bindwatch has written (or counted as lost) every failure
	// provoked: a loaded tracer is seconds behind the storm, and stopping
	// it then says so on stderr (failures still queued), which this test
	// forbids. Should it never get there, the checks below say why.
	for deadline := time.Now().Add(recordsTimeout); time.Now().Before(deadline) && writtenFailures(rotatedFiles(out)) < provoked; {
		time.Sleep(200 * time.Millisecond)
	}
	tr.stop(t)
	files := rotatedFiles(out)
	if len(files) != rotations+1 {
		t.Errorf("%d files after %d rotations", len(files), rotations)
	}
	tl := tallyFiles(t, files...)
	tl.accounted(t, provoked)
	if tl.lostRecords != 0 {
		t.Errorf("%d records could not be written", tl.lostRecords)
	}
	for _, f := range files[:len(files)-1] {
		if st, _ := os.Stat(f); st.Size() == 0 {
			t.Errorf("%s is empty: records between rotations went elsewhere", f)
		}
	}
	if strings.TrimSpace(tr.stderr.String()) != "" {
		t.Errorf("bindwatch said on stderr: %s", tr.stderr.String())
	}
}

// --output-max-size rotates during a storm, and --output-compress gzips
// the rotated files: every failure is accounted across the files, none is
// over the size, every line is whole.
func TestOutputMaxSize(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bindwatch.jsonl")
	port := testenv.FreePort(t)
	tr := startTracing(t, "--output", out, "--fold", "0", "--port", strconv.Itoa(port),
		"--output-max-size", "256K", "--output-max-files", "100", "--output-compress")
	st := startStorm(t, port, 1000)
	time.Sleep(3 * time.Second)
	provoked := st.stop()
	time.Sleep(300 * time.Millisecond)
	tr.stop(t)
	// Rotated files are gzipped: read them back as plain files.
	var files []string
	for i := 100; i >= 1; i-- {
		gz := fmt.Sprintf("%s.%d.gz", out, i)
		zf, err := os.Open(gz)
		if err != nil {
			continue
		}
		zr, err := gzip.NewReader(zf)
		if err != nil {
			t.Fatalf("%s: %v", gz, err)
		}
		b, err := io.ReadAll(zr)
		zf.Close()
		if err != nil {
			t.Fatalf("%s: %v", gz, err)
		}
		if len(b) > 256<<10 {
			t.Errorf("%s holds %d bytes, over --output-max-size", gz, len(b))
		}
		plain := filepath.Join(t.TempDir(), filepath.Base(gz)+".plain")
		os.WriteFile(plain, b, 0o600)
		files = append(files, plain)
	}
	if len(files) < 2 {
		t.Errorf("only %d rotated files: the output was not rotated and compressed", len(files))
	}
	if left, _ := filepath.Glob(out + ".[0-9]*[0-9]"); len(left) > 0 {
		t.Errorf("rotated files left uncompressed: %v", left)
	}
	tallyFiles(t, append(files, out)...).accounted(t, provoked)
}

// With `copytruncate` logrotate copies the file and truncates it in place:
// bindwatch's next write lands at the start (O_APPEND), not after a hole,
// and no record is lost or cut. (What is written between logrotate's copy
// and its truncate is lost whatever the program: logrotate(8) says so; the
// test provokes failures between rotations.)
func TestLogrotateCopytruncate(t *testing.T) {
	testenv.Require(t, "logrotate", "a real logrotate rotates the file")
	dir := t.TempDir()
	out := filepath.Join(dir, "bindwatch.jsonl")
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	tr := startTracing(t, "--output", out, "--fold", "0", "--port", strconv.Itoa(port), "--netns", ownNetns())
	const rounds, perRound = 4, 30
	for round := range rounds {
		for range perRound {
			testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		}
		for deadline := time.Now().Add(recordsTimeout); ; time.Sleep(20 * time.Millisecond) {
			b, _ := os.ReadFile(out)
			if bytes.Count(b, []byte(`"type":"bind_failure"`)) == perRound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the failures did not reach %s: %s", round, out, tr.stderr.String())
			}
		}
		logrotate(t, out, "copytruncate", tr.cmd.Process.Pid)
	}
	for range perRound {
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	}
	time.Sleep(300 * time.Millisecond)
	tr.stop(t)
	files := rotatedFiles(out)
	if len(files) != rounds+1 {
		t.Errorf("%d files after %d rotations", len(files), rounds)
	}
	tl := tallyFiles(t, files...)
	tl.accounted(t, (rounds+1)*perRound)
	if tl.recordsByTyp["bind_failure"] != (rounds+1)*perRound {
		t.Errorf("%d bind_failure records, want %d", tl.recordsByTyp["bind_failure"], (rounds+1)*perRound)
	}
}

// A full filesystem during a storm: tracing goes on, no line is cut,
// and once space is freed the records that could not be written are
// counted exactly in the file (output_lost) and in the stop record.
func TestOutputFullDisk(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	// Room for a moment's failures (a busy machine writes more of them
	// before the stop than an idle one): once the filler goes, the rest
	// of the storm and the stop record must fit.
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20-100<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bindwatch.jsonl")
	port := testenv.FreePort(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tr := startTracing(t, "--output", out, "--fold", "0", "--port", strconv.Itoa(port), "--metrics-addr", metrics)
	st := startStorm(t, port, 1000)
	for deadline := time.Now().Add(testenv.StartTimeout); !strings.Contains(tr.stderr.String(), "no space left"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the filesystem did not fill: %s", tr.stderr.String())
		}
	}
	time.Sleep(time.Second) // full for a while
	os.Remove(filler)
	time.Sleep(500 * time.Millisecond)
	provoked := st.stop()
	time.Sleep(300 * time.Millisecond)
	_, exposition := httpGet(t, "http://"+metrics+"/metrics")
	tr.stop(t)
	tl := tallyFiles(t, out)
	stop := tl.accounted(t, provoked)
	if want := fmt.Sprintf(`bindwatch_output_dropped_records_total{output="file"} %d`, tl.lostRecords); !strings.Contains(exposition, want) {
		t.Errorf("/metrics lacks %q", want)
	}
	if tl.outputLost == 0 || tl.recordsByTyp["output_lost"] == 0 {
		t.Errorf("no output_lost record although the disk was full (records %v)", tl.recordsByTyp)
	}
	if uint64(stop["output_lost"].(float64)) != tl.lostRecords {
		t.Errorf("stop says %v records lost, output_lost records %d", stop["output_lost"], tl.lostRecords)
	}
	stderr := tr.stderr.String()
	if strings.Count(stderr, "no space left") != 1 || !strings.Contains(stderr, "works again") {
		t.Errorf("standard error should say once that writing failed, and that it works again: %s", stderr)
	}
}

// bindwatch refuses a symlink planted for --output in a sticky
// world-writable directory: exit 1, a clear sentence, the target untouched.
func TestOutputPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o1777)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	link := filepath.Join(dir, "out.jsonl")
	os.Symlink(victim, link)
	code, stderr := run(t, exec.Command(bindwatchBin, "--output", link))
	if code != 1 || !strings.Contains(stderr, "symbolic link") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("exit %d, stderr %q; want exit 1 and one sentence about the symlink", code, stderr)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the target was written: %q", b)
	}
}

// bindwatch --syslog tcp://… sends each record of a real session to a real
// rsyslogd: the failure the test provoked arrives as a warning from
// app-name bindwatch carrying the JSON record, between start and stop.
func TestSyslogEndToEnd(t *testing.T) {
	r := testenv.StartRsyslog(t)
	port := testenv.FreePort(t)
	tr := startTracing(t, "--output", filepath.Join(t.TempDir(), "out.jsonl"), "--port", strconv.Itoa(port),
		"--syslog", fmt.Sprintf("tcp://127.0.0.1:%d", r.TCPPort))
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	time.Sleep(300 * time.Millisecond)
	tr.stop(t)
	msgs := r.WaitMessages(t, 3)
	var types []string
	for _, m := range msgs {
		types = append(types, m.MsgID)
		if m.App != "bindwatch" || m.ProcID != strconv.Itoa(tr.cmd.Process.Pid) || m.Input != "imtcp" {
			t.Errorf("message from app %q procid %q via %s", m.App, m.ProcID, m.Input)
		}
		if m.MsgID == "bind_failure" {
			if m.Severity != "4" || m.Record["port"] != float64(port) || m.Record["holders"] == nil {
				t.Errorf("bind_failure message: severity %s, record %v", m.Severity, m.Record)
			}
		}
	}
	if strings.Join(types, ",") != "start,bind_failure,stop" {
		t.Errorf("rsyslog got %v, want start, bind_failure, stop", types)
	}
}

// The reader of standard output goes away (bindwatch | head -1): tracing
// goes on, standard error says so once, and the stop comes on SIGINT with
// exit 0 — not death by SIGPIPE — said on standard error, as it cannot be
// written where it belongs.
func TestStdoutReaderGone(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(bindwatchBin, "--format", "json", "--port", strconv.Itoa(port), "--fold", "0", "--backend", testenv.Backend(), "--ready-file", ready)
	var stderr testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	w.Close()
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	r.Close() // the reader goes
	for range 5 {
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bindwatch exited with %v after its reader went: %s", err, stderr.String())
	}
	s := stderr.String()
	if strings.Count(s, "failed: broken pipe") != 1 || !strings.Contains(s, "standard output") {
		t.Errorf("standard error: %q, want one line saying standard output's reader is gone", s)
	}
	if !strings.Contains(s, "the stop record could not be written") || !strings.Contains(s, "5 failures") {
		t.Errorf("standard error: %q, want the stop record that could not be written", s)
	}
}

// --output -, /dev/stdout and /dev/stderr are the standard streams, taken
// as they are: /dev/stdout is a symlink the file rule would refuse, and a
// socket (systemd's journal stream) cannot even be reopened through it.
// Each stream gets the whole session (start, the failure, stop), the
// other stream none of it, and no file is created.
func TestOutputStandardStreams(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	for _, c := range []struct{ output, stream string }{
		{"-", "stdout"}, {"/dev/stdout", "stdout"}, {"/dev/stderr", "stderr"},
	} {
		t.Run(c.output, func(t *testing.T) {
			// Standard output is a socket, as under systemd: opening
			// /dev/stdout would fail (ENXIO), writing to it works.
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
			defer ours.Close()
			dir := t.TempDir()
			ready := filepath.Join(dir, "ready")
			cmd := exec.Command(bindwatchBin, "--output", c.output, "--format", "json", "--port", strconv.Itoa(port), "--fold", "0", "--backend", testenv.Backend(), "--ready-file", ready)
			cmd.Dir = dir
			var stderr testenv.SyncBuffer
			cmd.Stdout, cmd.Stderr = theirs, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			theirs.Close()
			stdout := make(chan string)
			go func() { b, _ := io.ReadAll(ours); stdout <- string(b) }()
			testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
			testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
			cmd.Process.Signal(syscall.SIGINT)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("bindwatch --output %s: %v: %s", c.output, err, stderr.String())
			}
			streams := map[string]string{"stdout": <-stdout, "stderr": stderr.String()}
			for name, s := range streams {
				full := strings.Contains(s, `"type":"start"`) && strings.Contains(s, `"type":"bind_failure"`) && strings.Contains(s, `"type":"stop"`)
				if name == c.stream && !full {
					t.Errorf("--output %s: standard %s lacks start, bind_failure or stop:\n%s", c.output, name, s)
				}
				if name != c.stream && strings.Contains(s, `"type":`) {
					t.Errorf("--output %s: records on standard %s too:\n%s", c.output, name, s)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("--output %s created %s in the working directory", c.output, entries[0].Name())
			}
		})
	}
	// A stream cannot be rotated: a usage error, not a file named "-".
	code, stderr := run(t, exec.Command(bindwatchBin, "--output", "/dev/stdout", "--output-max-size", "1M"))
	if code != 2 || !strings.Contains(stderr, "cannot be rotated") {
		t.Errorf("--output /dev/stdout --output-max-size 1M: exit %d, %q; want exit 2 saying a stream cannot be rotated", code, stderr)
	}
}

// A directory reached through another user's symlink — /tmp/logs -> a
// directory of the planter's choosing — is refused for every file
// bindwatch writes (--output, --ready-file, report --html): exit 1, one
// sentence, nothing created where the link points.
func TestPlantedDirectorySymlink(t *testing.T) {
	testenv.RequireRoot(t)
	shared := t.TempDir()
	os.Chmod(shared, 0o1777)
	target := t.TempDir()
	link := filepath.Join(shared, "logs")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "empty.jsonl")
	os.WriteFile(log, nil, 0o644)
	for _, args := range [][]string{
		{"--output", filepath.Join(link, "out.jsonl")},
		{"--ready-file", filepath.Join(link, "ready")},
		{"report", "--html", filepath.Join(link, "page.html"), log},
	} {
		cmd := exec.Command(bindwatchBin, args...)
		// Were the link followed, tracing would start and run on.
		timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		code, stderr := run(t, cmd)
		timer.Stop()
		if code != 1 || !strings.Contains(stderr, "uid 65534 owns") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and one sentence about the other user's link", args, code, stderr)
		}
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("a file was created through the planted link: %s", entries[0].Name())
	}
}
