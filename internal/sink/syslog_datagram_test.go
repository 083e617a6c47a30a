package sink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// A datagram's limit holds for the whole message, its RFC 5424 header
// included, not for the record alone: a collector reading at most
// maxDatagram bytes gets every byte of it, and the record still decodes.
// Two records: one far over the limit, and one a few bytes under it, which
// fits alone but not with its header.
func TestSyslogDatagramCountsHeader(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	far := failure(8080)
	far.Process.Cmdline = []string{"java"}
	for i := range 100 {
		far.Process.Cmdline = append(far.Process.Cmdline, fmt.Sprintf("/opt/lib/filler-%03d-%s.jar", i, strings.Repeat("x", 1000)))
	}
	near := failure(8081)
	near.Process.Cmdline = []string{"java", ""}
	b, err := JSON(near)
	if err != nil {
		t.Fatal(err)
	}
	near.Process.Cmdline[1] = strings.Repeat("x", maxDatagram-10-len(b))
	if b, _ := JSON(near); len(b) != maxDatagram-10 {
		t.Fatalf("the near record is %d bytes, want %d", len(b), maxDatagram-10)
	}
	s, err := DialSyslog(SyslogOptions{URL: "udp://" + pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, rec := range []*events.Failure{far, near} {
		if err := s.Write(rec); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 128<<10)
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("port %d: no datagram from the syslog sink: %v", rec.Port, err)
		}
		msg := buf[:n]
		if n > maxDatagram {
			t.Errorf("port %d: the message is %d bytes, header included: want ≤ %d", rec.Port, n, maxDatagram)
		}
		i := bytes.Index(msg, []byte(" - {"))
		if !bytes.HasPrefix(msg, []byte("<")) || i < 0 {
			t.Fatalf("port %d: not an RFC 5424 message carrying a record: %.200q", rec.Port, msg)
		}
		var got map[string]any
		if err := json.Unmarshal(msg[i+3:], &got); err != nil || got["type"] != events.TypeFailure || got["port"] != float64(rec.Port) {
			t.Errorf("port %d: the record does not decode as its bind_failure (%v): %.200q", rec.Port, err, msg[i+3:])
		}
	}
}
