package sink

import (
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The metrics server is reachable by every local user (it is usually on
// the host's network), so what one client can hold is bounded: time by the
// timeouts, connections (and so the tracer's fds, which holder lookups in
// /proc and sock_diag need) by MetricsMaxConns.
const (
	metricsReadHeaderTimeout = 5 * time.Second
	metricsReadTimeout       = 10 * time.Second
	metricsWriteTimeout      = 30 * time.Second
	// metricsIdleTimeout closes a keep-alive connection that sends no new
	// request: Prometheus scrapes every 15 s to 1 min and reconnects at no
	// cost.
	metricsIdleTimeout = 30 * time.Second

	// metricsMaxConnsCap is the most connections served at once.
	metricsMaxConnsCap = 64
	// metricsFDShare: the server keeps at most 1/metricsFDShare of the
	// fd limit, so that the rest stays for tracing and holder lookups.
	metricsFDShare = 16
)

// MetricsMaxConns is how many connections the metrics server keeps at
// once: 64, or RLIMIT_NOFILE/16 if that is less (at least 4).
func MetricsMaxConns() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return metricsMaxConnsCap
	}
	return int(max(4, min(metricsMaxConnsCap, lim.Cur/metricsFDShare)))
}

// connLimiter is the metrics server's listener: it keeps at most max
// connections. A new connection beyond that takes the place of the one
// that has waited longest without a request in progress (idle between
// keep-alive requests, or not yet sent a byte) — so a crowd of idle
// connections cannot keep /healthz from answering — and, when every one
// is serving a request, is closed at once, never queued.
type connLimiter struct {
	net.Listener
	max int

	mu      sync.Mutex
	conns   map[net.Conn]*connInfo
	evicted uint64 // idle connections closed to make room
	refused uint64 // connections closed at once: every place was busy
}

type connInfo struct {
	busy  bool      // a request is being read or served
	since time.Time // when it last changed state
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, conns: make(map[net.Conn]*connInfo)}
}

// Accept returns the next connection it admits.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if victim, ok := l.admit(c); ok {
			if victim != nil {
				victim.Close()
			}
			return c, nil
		}
		c.Close()
	}
}

// admit makes room for c, returning the connection to close for it, or
// false when there is none.
func (l *connLimiter) admit(c net.Conn) (victim net.Conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		var oldest time.Time
		for vc, info := range l.conns {
			if !info.busy && (victim == nil || info.since.Before(oldest)) {
				victim, oldest = vc, info.since
			}
		}
		if victim == nil {
			l.refused++
			return nil, false
		}
		delete(l.conns, victim)
		l.evicted++
	}
	l.conns[c] = &connInfo{since: time.Now()}
	return victim, true
}

// connState is the server's ConnState hook.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	info, ok := l.conns[c]
	switch {
	case !ok: // closed to make room, or not admitted
	case s == http.StateClosed || s == http.StateHijacked:
		delete(l.conns, c)
	default:
		info.busy = s == http.StateActive
		info.since = time.Now()
	}
}

// write writes the server's connection counts.
func (l *connLimiter) write(b *bytes.Buffer) {
	l.mu.Lock()
	n, evicted, refused := len(l.conns), l.evicted, l.refused
	l.mu.Unlock()
	writeScalar(b, kindGauge, "bindwatch_metrics_connections",
		"Connections the metrics server holds now (at most bindwatch_metrics_connections_max).", float64(n))
	writeHeader(b, "bindwatch_metrics_connections_closed_total",
		"Connections the metrics server closed because it held its most: evicted (idle, to make room for a new one), refused (every place was serving a request).", kindCounter)
	writeSample(b, "bindwatch_metrics_connections_closed_total", []string{"reason"}, []string{"evicted"}, float64(evicted))
	writeSample(b, "bindwatch_metrics_connections_closed_total", []string{"reason"}, []string{"refused"}, float64(refused))
	writeScalar(b, kindGauge, "bindwatch_metrics_connections_max",
		"The most connections the metrics server holds at once: 64, or RLIMIT_NOFILE/16 if less.", float64(l.max))
}
