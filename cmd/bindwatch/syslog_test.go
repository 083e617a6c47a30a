package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// stalledCollector is a TCP syslog collector that accepts connections and
// does not read them until resume: what a stuck collector looks like.
type stalledCollector struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []syslogFrame // what it read since resume
	go_  chan struct{}
}

// syslogFrame is one octet-counted message: its msgid and JSON record.
type syslogFrame struct {
	msgid  string
	record map[string]any
}

func startStalledCollector(t *testing.T) *stalledCollector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &stalledCollector{ln: ln, go_: make(chan struct{})}
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		for _, conn := range conns {
			conn.Close()
		}
	})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn)
			go func() {
				<-c.go_
				c.read(conn)
			}()
		}
	}()
	return c
}

func (c *stalledCollector) resume() { close(c.go_) }

// read parses "LEN MSG" frames until the connection ends (a frame cut by
// a connection bindwatch gave up on is dropped).
func (c *stalledCollector) read(conn net.Conn) {
	r := bufio.NewReaderSize(conn, 1<<20)
	for {
		n, err := r.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil {
			return
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		// <PRI>1 TIME HOST bindwatch PID MSGID - JSON
		f := bytes.SplitN(msg, []byte(" "), 8)
		if len(f) < 8 {
			continue
		}
		fr := syslogFrame{msgid: string(f[5])}
		json.Unmarshal(f[7], &fr.record)
		c.mu.Lock()
		c.msgs = append(c.msgs, fr)
		c.mu.Unlock()
	}
}

func (c *stalledCollector) find(msgid string) (map[string]any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		if m.msgid == msgid {
			return m.record, true
		}
	}
	return nil, false
}

func (c *stalledCollector) has(match func(syslogFrame) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.msgs, match)
}

// vmRSS is a process's resident set in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// lineCounter counts the lines written through it, keeping none.
type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

// A TCP syslog collector that accepts and stops reading, and a user (uid
// 65534) whose failures carry ~1 MB command lines: the records waiting for
// the collector are bounded in bytes (8 MiB), not only in number, so the
// tracer's memory stays bounded; what did not fit is counted and said to
// the collector (output_lost) once it reads again.
func TestSyslogQueueBoundedInBytes(t *testing.T) {
	testenv.RequireRoot(t)
	collector := startStalledCollector(t)
	const fails = 120
	port := testenv.FreePort(t)
	ready := t.TempDir() + "/ready"
	var stdout lineCounter
	cmd := exec.Command(bindwatchBin, "--format", "json", "--port", strconv.Itoa(port), "--fold", "0",
		"--syslog", "tcp://"+collector.ln.Addr().String(), "--backend", testenv.Backend(), "--ready-file", ready)
	var stderr testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	for deadline := time.Now().Add(testenv.StartTimeout); stdout.n.Load() < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no start record: %s", stderr.String())
		}
	}
	before := vmRSS(t, cmd.Process.Pid)

	// 8 arguments of 120 KB: ~1 MB, within the kernel's limits.
	attack := testenv.HelperAsUser(t, fmt.Sprintf("failbinds 192.0.2.1 %d %d", port, fails), 65534)
	for i := range 8 {
		attack.Args = append(attack.Args, fmt.Sprintf("%d%s", i, strings.Repeat("A", 120_000)))
	}
	stdin, _ := attack.StdinPipe()
	out, _ := attack.StdoutPipe()
	if err := attack.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); attack.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); !strings.HasPrefix(line, "ready ") || !strings.HasSuffix(line, fmt.Sprintf(" %d\n", fails)) {
		t.Fatalf("attacker said %q, want %d failed binds", line, fails)
	}
	peak := before
	for deadline := time.Now().Add(60 * time.Second); stdout.n.Load() < 1+fails; time.Sleep(20 * time.Millisecond) {
		peak = max(peak, vmRSS(t, cmd.Process.Pid))
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d failures written in 60s: %s", stdout.n.Load()-1, fails, stderr.String())
		}
	}
	peak = max(peak, vmRSS(t, cmd.Process.Pid))
	t.Logf("RSS %d MiB before, %d MiB at most while ~%d MiB of records could not be sent", before>>20, peak>>20, fails)
	if grew := peak - before; grew > 64<<20 {
		t.Errorf("RSS grew by %d MiB while the collector did not read: the queue is not bounded in bytes", grew>>20)
	}

	// The collector reads again: a new failure brings the output_lost
	// notice, in order, with what was dropped.
	collector.resume()
	testenv.FailBind(t, "tcp", "192.0.2.1", port, testenv.Opts{}, syscall.EADDRNOTAVAIL)
	for deadline := time.Now().Add(testenv.StartTimeout); !collector.has(func(m syslogFrame) bool {
		p, _ := m.record["process"].(map[string]any)
		return m.msgid == "bind_failure" && p["pid"] == float64(os.Getpid())
	}); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector, reading again, did not get the new failure within 3m: %s", stderr.String())
		}
	}
	lost, ok := collector.find("output_lost")
	if !ok {
		t.Fatalf("the collector got no output_lost: %s", stderr.String())
	}
	if r, _ := lost["records"].(float64); r < 1 || lost["output"] != "syslog" {
		t.Errorf("output_lost %v, want the dropped records counted", lost)
	}
	// The queue drains (megabytes, on a busy machine) before the stop:
	// a stop is bounded in time, and would count what it could not send.
	count := func() int { collector.mu.Lock(); defer collector.mu.Unlock(); return len(collector.msgs) }
	for n, deadline := count(), time.Now().Add(60*time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		if m := count(); m == n {
			break
		} else {
			n = m
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bindwatch: %v: %s", err, stderr.String())
	}
	if stop, ok := collector.find("stop"); !ok || stop["output_lost"].(float64) < lost["records"].(float64) {
		collector.mu.Lock()
		var ids []string
		for _, m := range collector.msgs {
			ids = append(ids, m.msgid)
		}
		collector.mu.Unlock()
		t.Errorf("stop to the collector %v, want output_lost ≥ %v; it got %v\nstderr: %s", stop, lost["records"], ids, stderr.String())
	}
}
