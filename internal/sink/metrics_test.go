package sink

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
			t.Fatalf("connection %d: no answer and not closed within 20s", i)
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
