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

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// TestRecoveredCountsRefusedConnections: a restart told from the client's
// side. A real server (a helper process listening as servers do) holds the port, a second instance fails to
// bind it (the incident opens), clients connect to the old one, which
// never accepts them, the old one is stopped with SIGTERM (the kernel
// resets the connections in its queue), and a client connects while
// nothing listens, counting the ECONNREFUSED it gets itself; then the new
// instance listens. The released record's reset_connections must match
// the ECONNRESETs the clients saw, and the recovered record's
// refused_connections the ECONNREFUSEDs — or, on a kernel that cannot
// count those, be absent with the start record saying so.
func TestRecoveredCountsRefusedConnections(t *testing.T) {
	port := testenv.FreePort(t)
	refused, reset := 0, 0
	lines := runTraceUntil(t, func() {
		// A server as a program's main loop is: listens, never accepts
		// here, exits on SIGTERM (the kernel closes its listener).
		holder := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
		time.Sleep(300 * time.Millisecond) // the failure opens the incident
		to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
		// Connections the kernel accepts into the old server's queue,
		// which the server (asleep) never accepts.
		var queued []int
		for range 3 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := unix.Connect(fd, to); err != nil {
				t.Fatalf("connect to the old server: %v", err)
			}
			queued = append(queued, fd)
		}
		syscall.Kill(holder.PID, syscall.SIGTERM)
		holder.Cmd.Wait()
		buf := make([]byte, 1)
		for _, fd := range queued {
			if _, err := unix.Read(fd, buf); errors.Is(err, unix.ECONNRESET) {
				reset++
			} else {
				t.Errorf("read on a connection in the old server's queue after it exited: %v, want ECONNRESET", err)
			}
		}
		for range 7 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			err = unix.Connect(fd, to)
			unix.Close(fd)
			switch {
			case errors.Is(err, unix.ECONNREFUSED):
				refused++
			case err != nil:
				t.Fatalf("connect while nothing listens: %v, want ECONNREFUSED", err)
			default:
				t.Fatal("connect while nothing listens succeeded")
			}
		}
		testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	}, func(lines [][]byte) bool {
		for _, l := range lines {
			var r struct{ Type string }
			if json.Unmarshal(l, &r) == nil && r.Type == events.TypeRecovered {
				return true
			}
		}
		return false
	}, "--port", strconv.Itoa(port), "--fold", "0")
	schemaLines(t, lines)
	var start events.Start
	var rec *events.Recovered
	var rel *events.Released
	for _, l := range lines {
		var r struct{ Type string }
		json.Unmarshal(l, &r)
		switch r.Type {
		case events.TypeStart:
			json.Unmarshal(l, &start)
		case events.TypeReleased:
			rel = &events.Released{}
			json.Unmarshal(l, rel)
		case events.TypeRecovered:
			rec = &events.Recovered{}
			json.Unmarshal(l, rec)
		}
	}
	if rec == nil || rel == nil {
		t.Fatalf("recovered %v, released %v: want both", rec, rel)
	}
	// The kernel reads the old listener's accept queue as it closes:
	// every kernel with tp_btf measures it.
	t.Logf("the clients saw %d ECONNRESET; released: reset_connections %+v", reset, rel.ResetConnections)
	if c := rel.ResetConnections; c == nil || c.Count != uint64(reset) || !c.First.Equal(rel.Time) {
		t.Errorf("released: reset_connections %+v, the clients saw %d ECONNRESET", c, reset)
	}
	if why, ok := start.Limits["client_impact"]; ok {
		if rec.RefusedConnections != nil {
			t.Errorf("the start record says client impact is not measured (%s), the recovered record counts %+v", why, rec.RefusedConnections)
		}
		if !testenv.KernelAtLeast(t, 5, 17) {
			return
		}
		t.Fatalf("kernel 5.17+ but client impact not measured: %s", why)
	}
	if rec.DroppedDatagrams != nil {
		t.Errorf("a TCP port's recovery counts dropped datagrams: %+v", rec.DroppedDatagrams)
	}
	c := rec.RefusedConnections
	t.Logf("the client saw %d ECONNREFUSED; recovered: refused_connections %+v", refused, c)
	if c == nil || c.Count != uint64(refused) {
		t.Fatalf("recovered: refused_connections %+v, the client saw %d ECONNREFUSED", c, refused)
	}
	if c.First.IsZero() || c.Last.Before(c.First) || c.Last.After(rec.Time) {
		t.Errorf("refused_connections: first %v, last %v, recovered at %v", c.First, c.Last, rec.Time)
	}
	// The report says it in one line.
	log := filepath.Join(t.TempDir(), "trace.jsonl")
	if err := os.WriteFile(log, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bindwatchBin, "report", "--format", "text", log).CombinedOutput()
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	want := fmt.Sprintf("clients: %d connection attempts refused during the ", refused)
	want2 := fmt.Sprintf("gap; %d connections in the old listener's queue reset at release", reset)
	t.Logf("report:\n%s", out)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), want2) {
		t.Errorf("report does not say %q ... %q:\n%s", want, want2, out)
	}
	// The page says it too, in the incident's block.
	page := filepath.Join(t.TempDir(), "report.html")
	if out, err := exec.Command(bindwatchBin, "report", "--html", page, log).CombinedOutput(); err != nil {
		t.Fatalf("report --html: %v\n%s", err, out)
	}
	html, _ := os.ReadFile(page)
	want = fmt.Sprintf("<b>clients:</b> %d connection attempts refused during the ", refused)
	want2 = strings.ReplaceAll(want2, "'", "&#39;") // html/template's escape
	if !strings.Contains(string(html), want) || !strings.Contains(string(html), want2) {
		t.Errorf("the report page does not say %q ... %q", want, want2)
	}
}
