package sink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

func sessionRecords() []events.Record {
	now := time.Now()
	return []events.Record{
		&events.Start{Header: events.Header{Type: events.TypeStart, Version: events.Version, Time: now, Host: "h"}, Backend: "tracepoint"},
		failure(8080),
		&events.Repeats{Header: events.Header{Type: events.TypeRepeats, Version: events.Version, Time: now, Host: "h"}, Count: 7, Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: 8080},
		&events.Lost{Header: events.Header{Type: events.TypeLost, Version: events.Version, Time: now, Host: "h"}, Count: 3},
		&events.Stop{Header: events.Header{Type: events.TypeStop, Version: events.Version, Time: now, Host: "h"}, Failures: 11},
	}
}

// Over a unix socket, UDP and TCP, rsyslog receives each record as an RFC
// 5424 message from app-name bindwatch, msgid the record type, severity
// per type (warning for failures, error for losses, info for start and
// stop), facility daemon, carrying the JSON record whole.
func TestSyslogTransports(t *testing.T) {
	r := testenv.StartRsyslog(t)
	urls := map[string]string{
		"imuxsock": "unix://" + r.Sock,
		"imudp":    fmt.Sprintf("udp://127.0.0.1:%d", r.UDPPort),
		"imtcp":    fmt.Sprintf("tcp://127.0.0.1:%d", r.TCPPort),
	}
	for _, input := range []string{"imuxsock", "imudp", "imtcp"} {
		s, err := DialSyslog(SyslogOptions{URL: urls[input]})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range sessionRecords() {
			if err := s.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
	lines := r.WaitMessages(t, 15)
	wantSeverity := map[string]string{"start": "6", "bind_failure": "4", "repeats": "4", "lost": "3", "stop": "6"}
	byInput := map[string][]string{}
	for _, l := range lines {
		typ, _ := l.Record["type"].(string)
		byInput[l.Input] = append(byInput[l.Input], typ)
		if l.Version != "1" || l.App != "bindwatch" || l.ProcID != fmt.Sprint(os.Getpid()) || l.Facility != "3" {
			t.Errorf("%s: version %s app %s procid %s facility %s; want RFC 5424 (1), bindwatch, our pid, daemon (3)", l.Input, l.Version, l.App, l.ProcID, l.Facility)
		}
		if l.MsgID != typ || l.Severity != wantSeverity[typ] {
			t.Errorf("%s: %s record with msgid %q severity %s, want msgid %q severity %s", l.Input, typ, l.MsgID, l.Severity, typ, wantSeverity[typ])
		}
	}
	for _, input := range []string{"imuxsock", "imudp", "imtcp"} {
		if got := strings.Join(byInput[input], ","); got != "start,bind_failure,repeats,lost,stop" {
			t.Errorf("over %s rsyslog got %s", input, got)
		}
	}
}

// While the TCP collector is away records wait in a bounded buffer; those
// that do not fit are counted, and when the collector is back (reconnect)
// it gets the buffered ones in order, an output_lost record with the exact
// count, then the rest — and the stop record says the total.
func TestSyslogCollectorAway(t *testing.T) {
	r := testenv.StartRsyslog(t)
	var warn testenv.SyncBuffer
	s, err := DialSyslog(SyslogOptions{URL: fmt.Sprintf("tcp://127.0.0.1:%d", r.TCPPort), Buffer: 5, Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	s.Write(failure(1))
	r.WaitMessages(t, 1)
	r.Stop() // the collector goes away
	time.Sleep(200 * time.Millisecond)
	for i := 2; i <= 9; i++ { // 5 fit in the buffer, 3 do not
		s.Write(failure(i))
	}
	time.Sleep(500 * time.Millisecond)
	r.Restart(t)
	s.Write(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: events.Version, Time: time.Now(), Host: "h"}, Failures: 9})
	s.Close()
	lines := r.WaitMessages(t, 8)
	var got []string
	for _, l := range lines {
		switch l.Record["type"] {
		case events.TypeFailure:
			got = append(got, fmt.Sprint(l.Record["process"].(map[string]any)["pid"]))
		case events.TypeOutputLost:
			got = append(got, fmt.Sprintf("lost %v/%v", l.Record["records"], l.Record["failures"]))
			if l.Severity != "3" || l.Record["output"] != "syslog" {
				t.Errorf("output_lost message: severity %s, output %v", l.Severity, l.Record["output"])
			}
		case events.TypeStop:
			got = append(got, fmt.Sprintf("stop %v", l.Record["output_lost"]))
		}
	}
	if want := "1,2,3,4,5,6,lost 3/3,stop 3"; strings.Join(got, ",") != want {
		t.Errorf("rsyslog got %s, want %s (the first message after the restart may only be the buffered ones)", strings.Join(got, ","), want)
	}
	if st := s.Stats(); st.Dropped != 3 {
		t.Errorf("stats %+v, want 3 dropped", st)
	}
	if w := warn.String(); !strings.Contains(w, "works again") {
		t.Errorf("standard error: %q", w)
	}
}

// Bad URLs are refused with a hint.
func TestSyslogURLs(t *testing.T) {
	for _, u := range []string{"syslog://x", "tcp://nohostport", "udp://127.0.0.1:514/path", "unix://"} {
		if _, err := DialSyslog(SyslogOptions{URL: u}); err == nil || !strings.Contains(err.Error(), "hint:") {
			t.Errorf("DialSyslog(%q) = %v, want an error with a hint", u, err)
		}
	}
}

// With the collector away, Close gives up within a second (a stop does
// not wait on it) and says what could not be sent.
func TestSyslogCloseCollectorAway(t *testing.T) {
	var warn testenv.SyncBuffer
	s, err := DialSyslog(SyslogOptions{URL: fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t)), Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	s.Write(failure(1))
	s.Write(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: events.Version, Time: time.Now(), Host: "h"}})
	time.Sleep(300 * time.Millisecond) // into a backoff
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with the collector away", took)
	}
	if w := warn.String(); !strings.Contains(w, "connection refused") || !strings.Contains(w, "2 records could not be sent before exit") {
		t.Errorf("standard error: %q", w)
	}
}

// A stream socket at a unix:// path (syslog-ng's unix-stream) gets
// octet-counted messages: here socat listens and hands on the bytes.
func TestSyslogUnixStream(t *testing.T) {
	testenv.RequireCommand(t, "socat is the stream collector", "socat")
	sock := filepath.Join(t.TempDir(), "stream.sock")
	var got testenv.SyncBuffer
	socat := exec.Command("socat", "-u", "UNIX-LISTEN:"+sock, "STDOUT")
	socat.Stdout = &got
	if err := socat.Start(); err != nil {
		t.Fatalf("socat: %v", err)
	}
	defer socat.Process.Kill()
	testenv.WaitForFile(t, sock, 5*time.Second, nil)
	s, err := DialSyslog(SyslogOptions{URL: "unix://" + sock})
	if err != nil {
		t.Fatal(err)
	}
	s.Write(failure(1))
	s.Write(&events.Stop{Header: events.Header{Type: events.TypeStop, Version: events.Version, Time: time.Now(), Host: "h"}})
	s.Close()
	socat.Wait() // socat ends when bindwatch closes the connection
	b := got.Bytes()
	for _, want := range []string{"bind_failure", "stop"} {
		sp := bytes.IndexByte(b, ' ')
		n, err := strconv.Atoi(string(b[:max(sp, 0)]))
		if sp < 0 || err != nil || len(b) < sp+1+n {
			t.Fatalf("not an octet-counted frame: %q", b)
		}
		msg := b[sp+1 : sp+1+n]
		if !bytes.HasPrefix(msg, []byte("<")) || !bytes.Contains(msg, []byte(" bindwatch ")) || !bytes.Contains(msg, []byte(" "+want+" - {")) {
			t.Errorf("frame %q, want an RFC 5424 %s message", msg, want)
		}
		b = b[sp+1+n:]
	}
	if len(b) != 0 {
		t.Errorf("left over: %q", b)
	}
}

// A process controls its command line: one of ~100 KB (and a holder with
// the same) must not keep its failure from a datagram collector. Over a
// unix socket and UDP, rsyslog gets the bind_failure, shortened to fit one
// datagram around "…", with its head and tail, and — as JSON — still a
// record of docs/schema.json that says cmdline_truncated.
func TestSyslogLongCommandLine(t *testing.T) {
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	r := testenv.StartRsyslog(t)
	argv := []string{"java"}
	for i := range 100 {
		argv = append(argv, fmt.Sprintf("/opt/lib/filler-%03d-%s.jar", i, strings.Repeat("x", 1000)))
	}
	argv = append(argv, "com.example.Main", "--server.port=8080")
	long := failure(8080)
	long.Backend, long.Hook = "tracepoint", "tp_exit_bind"
	long.Process.Cmdline = argv
	long.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080,
		Processes: []events.Process{{PID: 7, Comm: "java", Cmdline: argv}}}}
	b, _ := JSON(long)
	if len(b) < 200<<10 {
		t.Fatalf("the record is only %d bytes: not a test of the datagram limit", len(b))
	}
	var whole any
	if err := json.Unmarshal(b, &whole); err != nil || schema.Validate(whole) != nil {
		t.Fatalf("the test's record is not one of docs/schema.json: %v %v", err, schema.Validate(whole))
	}
	for _, c := range []struct {
		form Form
		name string
	}{{JSON, "json"}, {ECS, "ecs"}} {
		for _, url := range []string{"unix://" + r.Sock, fmt.Sprintf("udp://127.0.0.1:%d", r.UDPPort)} {
			s, err := DialSyslog(SyslogOptions{URL: url, Form: c.form})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Write(long); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
	}
	lines := r.WaitMessages(t, 4)
	for _, l := range lines {
		if l.MsgID != events.TypeFailure {
			t.Errorf("%s: got a %s message, want the bind_failure (it was counted as lost?)", l.Input, l.MsgID)
			continue
		}
		raw, _ := json.Marshal(l.Record)
		if len(raw) > maxDatagram || !strings.Contains(string(raw), "com.example.Main") || !strings.Contains(string(raw), "filler-000") || !strings.Contains(string(raw), events.CmdlineGap) {
			t.Errorf("%s: %d bytes, want ≤ %d with the command line's head and tail around %q: %.300s", l.Input, len(raw), maxDatagram, events.CmdlineGap, raw)
		}
		if _, ecs := l.Record["ecs"]; ecs {
			continue
		}
		if err := schema.Validate(l.Record); err != nil {
			t.Errorf("%s: the shortened record is not one of docs/schema.json: %v", l.Input, err)
		}
		if p := l.Record["process"].(map[string]any); p["cmdline_truncated"] != true {
			t.Errorf("%s: process %v does not say cmdline_truncated", l.Input, p["cmdline_truncated"])
		}
	}
}

// A TCP collector that accepts and never reads: the messages waiting for
// it are bounded in bytes, whatever their number; the rest are counted.
func TestSyslogQueueBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // accepted, never read
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	var warn testenv.SyncBuffer
	const limit = 256 << 10
	s, err := DialSyslog(SyslogOptions{URL: "tcp://" + ln.Addr().String(), BufferBytes: limit, Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	f := failure(8080)
	f.Process.Cmdline = []string{"x", strings.Repeat("A", 100<<10)}
	const n = 400 // 40 MB: more than the kernel's socket buffers take
	for range n {
		if err := s.Write(f); err != nil {
			t.Fatal(err)
		}
		if q := s.QueueBytes(); q > limit {
			t.Fatalf("%d bytes queued, more than the %d allowed", q, limit)
		}
	}
	st := s.Stats()
	if st.Dropped == 0 || st.Dropped >= n {
		t.Errorf("dropped %d of %d records, want some (what the collector's buffers and the queue could not take)", st.Dropped, n)
	}
	s.Close()
	if w := warn.String(); !strings.Contains(w, "buffer full") || !strings.Contains(w, "does not read") {
		t.Errorf("standard error does not say the buffer is full, with a hint: %q", w)
	}
}

// Records written while the sender finds out that a unix:// path is a
// stream socket (and switches to octet counting): run with -race, this
// catches the sender changing the network Write reads without the lock.
// The window is the sender's two dials, a few microseconds, so the
// scenario is played many times (one round caught the race about once in
// 30 runs; 300 rounds catch it every time).
func TestSyslogUnixStreamWhileWriting(t *testing.T) {
	for round := range 300 {
		if !syslogStreamRound(t) {
			t.Fatalf("round %d failed", round)
		}
	}
}

func syslogStreamRound(t *testing.T) bool {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "stream.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got, connected := make(chan int, 1), make(chan struct{})
	go func() {
		c, err := ln.Accept()
		close(connected)
		if err != nil {
			got <- -1
			return
		}
		b, _ := io.ReadAll(c)
		got <- bytes.Count(b, []byte(" bind_failure - {"))
	}()
	s, err := DialSyslog(SyslogOptions{URL: "unix://" + sock, Buffer: 1 << 20, BufferBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	// Writing until the sender has connected, and some more.
	n := 0
	for more := 10; more > 0; n++ {
		s.Write(failure(1))
		select {
		case <-connected:
			more--
		default:
		}
	}
	s.Close()
	if m := <-got; m != n {
		t.Errorf("the stream collector got %d of %d messages", m, n)
		return false
	}
	return true
}
