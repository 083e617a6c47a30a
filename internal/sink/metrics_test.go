package sink

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// connectIdle opens n keep-alive connections to addr, each making one
// request and then staying idle, and returns them.
func connectIdle(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	return conns
}

// metricValue returns the value of the series line starting with name in
// /metrics, or "".
func metricValue(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// Idle keep-alive connections beyond the cap do not pile up: the server
// holds at most its cap, closes the idle ones that waited longest to make
// room, and /healthz answers through the crowd.
func TestMetricsConnectionCap(t *testing.T) {
	m, err := ListenMetrics(MetricsOptions{Addr: "127.0.0.1:0", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := m.conns.Addr().String()
	max := m.conns.max
	conns := connectIdle(t, addr, 10*max)
	// Every connection got its answer or was closed: the server is done
	// with the crowd.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d: no answer and not closed within 3m", i)
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz with %d idle connections open: %v", len(conns), err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, b)
	}
	m.conns.mu.Lock()
	held := len(m.conns.conns)
	m.conns.mu.Unlock()
	if held > max {
		t.Errorf("the server holds %d connections, more than its cap %d", held, max)
	}
	if v := metricValue(t, addr, `bindwatch_metrics_connections_closed_total{reason="evicted"}`); v == "" || v == "0" {
		t.Errorf("evicted connections: %q, want the crowd counted", v)
	}
	if v := metricValue(t, addr, "bindwatch_metrics_connections_max"); v != fmt.Sprint(max) {
		t.Errorf("bindwatch_metrics_connections_max = %q, want %d", v, max)
	}
}

// When every place is serving a request, a new connection is closed at
// once (not queued), and counted.
func TestMetricsConnectionRefusedWhenBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(ln, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			l.connState(c, http.StateNew)
			l.connState(c, http.StateActive) // a request in progress
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		<-accepted
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("a third connection with two busy ones: read %v, want EOF (closed at once)", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refused != 1 || l.evicted != 0 || len(l.conns) != 2 {
		t.Errorf("refused %d, evicted %d, held %d; want 1, 0, 2", l.refused, l.evicted, len(l.conns))
	}
}

// scrape returns /metrics of addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Incidents are counted by cause and by how they ended — recovered,
// abandoned, or open when tracing stopped — with bounded label values,
// and their durations observed; the exposition passes promtool.
func TestMetricsIncidents(t *testing.T) {
	m, err := ListenMetrics(MetricsOptions{Addr: "127.0.0.1:0", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := m.conns.Addr().String()
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	fail := func(port uint16, ms int, cause string) *events.Failure {
		return &events.Failure{Header: events.Header{Type: events.TypeFailure, Time: at(ms)}, Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Port: port,
			Process: events.Process{PID: 7, Netns: 1}, Cause: cause}
	}
	unserved := int64(40)
	for _, rec := range []events.Record{
		&events.Start{Header: events.Header{Type: events.TypeStart, Time: t0}, Backend: "tracepoint"},
		fail(80, 0, ""), fail(80, 100, events.CausePortInUse), // the first diagnosed failure names the cause
		&events.Recovered{Header: events.Header{Type: events.TypeRecovered, Time: at(1500)}, Proto: "tcp", Netns: 1, Port: 80,
			Durations: events.Durations{ContentionMS: 1500, UnservedMS: &unserved}},
		fail(81, 0, events.CauseTimeWait),
		&events.Abandoned{Header: events.Header{Type: events.TypeAbandoned, Time: at(12000)}, Proto: "tcp", Netns: 1, Port: 81, Start: at(0), LastAttempt: at(300)},
		fail(82, 0, "a cause of a newer bindwatch"),
		fail(83, 0, events.CausePortInUse),
		&events.Stop{Header: events.Header{Type: events.TypeStop, Time: at(13000)}},
	} {
		m.Write(rec)
	}
	body := scrape(t, addr)
	for _, want := range []string{
		`bindwatch_incidents_total{cause="port_in_use",state="recovered"} 1`,
		`bindwatch_incidents_total{cause="time_wait",state="abandoned"} 1`,
		`bindwatch_incidents_total{cause="other",state="open"} 1`,
		`bindwatch_incidents_total{cause="port_in_use",state="open"} 1`,
		"bindwatch_incident_unserved_seconds_count 1",
		"bindwatch_incident_unserved_seconds_sum 0.04",
		`bindwatch_incident_unserved_seconds_bucket{le="0.05"} 1`,
		`bindwatch_incident_unserved_seconds_bucket{le="0.025"} 0`,
		"bindwatch_incident_contention_seconds_count 2",
		"bindwatch_incident_contention_seconds_sum 1.8",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(body, "bindwatch_incident"))
		}
	}
	// Open is said once, at the stop: a second stop counts nothing more.
	m.Write(&events.Stop{Header: events.Header{Type: events.TypeStop, Time: at(14000)}})
	if body := scrape(t, addr); !strings.Contains(body, `bindwatch_incidents_total{cause="port_in_use",state="open"} 1`+"\n") {
		t.Errorf("a second stop counted open incidents again:\n%s", grepLines(body, "bindwatch_incidents_total"))
	}
	testenv.RequireCommand(t, "checks the exposition", "promtool")
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// The incidents beyond the live tracer's bound are not followed, and the
// end of one of them is counted under cause unknown: no label value
// comes from what a user controls.
func TestMetricsIncidentsBounded(t *testing.T) {
	m, err := ListenMetrics(MetricsOptions{Addr: "127.0.0.1:0", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for p := range maxOpenIncidents + 100 {
		m.Write(&events.Failure{Header: events.Header{Type: events.TypeFailure}, Proto: "udp", Port: uint16(p + 1), Cause: events.CausePortInUse})
	}
	if n := len(m.open); n != maxOpenIncidents {
		t.Errorf("%d incidents followed, want at most %d", n, maxOpenIncidents)
	}
	m.Write(&events.Recovered{Header: events.Header{Type: events.TypeRecovered}, Proto: "udp", Port: maxOpenIncidents + 50})
	body := scrape(t, m.conns.Addr().String())
	if !strings.Contains(body, `bindwatch_incidents_total{cause="unknown",state="recovered"} 1`+"\n") {
		t.Errorf("the recovery of an incident beyond the bound:\n%s", grepLines(body, "bindwatch_incidents_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A port the tracer gave no incident (its table or the user's quota was
// full: an incident_untracked record) is no incident here either: its
// failures open none, and the stop counts it in no state.
func TestMetricsIncidentsUntracked(t *testing.T) {
	m, err := ListenMetrics(MetricsOptions{Addr: "127.0.0.1:0", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fail := &events.Failure{Header: events.Header{Type: events.TypeFailure}, Proto: "tcp", Port: 9, Process: events.Process{Netns: 1}, Cause: events.CausePortInUse}
	m.Write(fail)
	m.Write(&events.IncidentUntracked{Header: events.Header{Type: events.TypeUntracked}, Proto: "tcp", Netns: 1, Port: 9,
		Table: events.UntrackedIncidents, Reason: events.UntrackedUserQuota})
	m.Write(fail)
	m.Write(&events.Stop{Header: events.Header{Type: events.TypeStop}})
	if body := scrape(t, m.conns.Addr().String()); strings.Contains(body, "bindwatch_incidents_total{") {
		t.Errorf("an untracked port counted as an incident:\n%s", grepLines(body, "bindwatch_incidents_total"))
	}
}

// A lost record of incident records only (the kernel's incident ring was
// full, a signal flood) is said in every form: its text, its ECS field,
// the incident_records_lost counter (and not the failures' one), and it is
// valid against docs/schema.json.
func TestLostIncidentRecords(t *testing.T) {
	m, err := ListenMetrics(MetricsOptions{Addr: "127.0.0.1:0", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lost := &events.Lost{Header: events.Header{Type: events.TypeLost, Version: events.Version, Time: time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC), Host: "h"},
		IncidentRecords: 37}
	m.Write(lost)
	addr := m.conns.Addr().String()
	if got := metricValue(t, addr, "bindwatch_incident_records_lost_total"); got != "37" {
		t.Errorf("bindwatch_incident_records_lost_total %q, want 37", got)
	}
	if got := metricValue(t, addr, "bindwatch_events_lost_total"); got != "0" {
		t.Errorf("bindwatch_events_lost_total %q, want 0: no failure was lost", got)
	}
	if text := events.Text(lost); !strings.Contains(text, "LOST 37 incident records") {
		t.Errorf("text %q does not say the incident records lost", text)
	}
	b, err := ECS(lost)
	if err != nil || !strings.Contains(string(b), `"incident_records":37`) {
		t.Errorf("ECS %s (%v): want bindwatch.lost.incident_records 37", b, err)
	}
	schema, err := testenv.LoadSchema("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	line, err := events.MarshalJSON(lost)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(line, &doc); err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("%s: %v", line, err)
	}
}
