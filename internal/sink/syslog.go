package sink

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"golang.org/x/sys/unix"
)

// Syslog severities (RFC 5424 section 6.2.1) and the facility bindwatch
// logs as (daemon).
const (
	sevErr      = 3
	sevWarning  = 4
	sevNotice   = 5
	sevInfo     = 6
	facilityLog = 3 // daemon
)

// severity is the syslog severity of a record type: a failure is a
// warning; records about what was lost are errors.
func severity(typ string) int {
	switch typ {
	case events.TypeFailure, events.TypeRepeats:
		return sevWarning
	case events.TypeLost, events.TypeOutputLost:
		return sevErr
	case events.TypeStart, events.TypeStop:
		return sevInfo
	}
	return sevNotice
}

// SyslogOptions configure a Syslog output.
type SyslogOptions struct {
	// URL is unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT.
	URL string
	// Form encodes the record carried as the message (JSON by default).
	Form Form
	// Buffer is how many messages are kept while the collector is away
	// (default 10000), and BufferBytes how many bytes they may take
	// (default 8 MiB); records beyond either are dropped and counted.
	Buffer      int
	BufferBytes int
	// Warn receives the one-line messages of an outage.
	Warn io.Writer
}

// Syslog sends each record as one RFC 5424 message — app-name bindwatch,
// msgid the record type, a severity per type, the record (JSON) as the
// message — over a unix datagram socket, UDP, or TCP with octet-counted
// framing (RFC 6587). Sending is done by its own goroutine, so a slow or
// absent collector never holds up tracing: messages wait in a bounded
// buffer, the connection is made again with backoff, and records that do
// not fit in the buffer are counted and said in-band (output_lost) to the
// collector when it is back.
type Syslog struct {
	network, addr string
	form          Form
	max, maxBytes int
	host          string
	pid           string

	mu         sync.Mutex
	queue      []syslogMsg
	queueBytes int // the messages' bytes in queue
	loss       lossBook
	// noticeQueued: an output_lost notice waits in the queue.
	noticeQueued bool
	closing      bool
	wake         chan struct{}
	quit         chan struct{} // Close gave up waiting for the collector
	closingCh    chan struct{} // closed by Close: a backoff ends early
	done         chan struct{}
}

// syslogMsg is a queued message, or the place of an output_lost notice.
// It does not keep the record: the queue's memory is its messages' bytes.
type syslogMsg struct {
	b        []byte // the whole message, header included
	failures uint64 // the failures the record carried (failuresIn)
	notice   *events.OutputLost
}

// DialSyslog checks url and starts the sending goroutine. It does not wait
// for the collector: one that is away now gets the records when it is back.
func DialSyslog(opts SyslogOptions) (*Syslog, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("--syslog %s: %v (hint: unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT)", opts.URL, err)
	}
	s := &Syslog{form: opts.Form, max: opts.Buffer, maxBytes: opts.BufferBytes, pid: strconv.Itoa(os.Getpid()), wake: make(chan struct{}, 1), quit: make(chan struct{}), closingCh: make(chan struct{}), done: make(chan struct{})}
	switch u.Scheme {
	case "unix":
		s.network, s.addr = "unixgram", u.Path
		if u.Path == "" {
			return nil, fmt.Errorf("--syslog %s: no socket path (hint: unix:///dev/log)", opts.URL)
		}
	case "udp", "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Path != "" {
			return nil, fmt.Errorf("--syslog %s: want %s://HOST:PORT (hint: %s://127.0.0.1:514)", opts.URL, u.Scheme, u.Scheme)
		}
		s.network, s.addr = u.Scheme, u.Host
	default:
		return nil, fmt.Errorf("--syslog %s: unknown scheme %q (hint: unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT)", opts.URL, u.Scheme)
	}
	if s.form == nil {
		s.form = JSON
	}
	if s.max <= 0 {
		s.max = DefaultSyslogBuffer
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultSyslogBufferBytes
	}
	s.host, _ = os.Hostname()
	if s.host == "" {
		s.host = "-"
	}
	s.loss = newLossBook("syslog", "--syslog "+opts.URL, opts.Warn)
	go s.send()
	return s, nil
}

// errBufferFull: as many messages wait for the collector as may.
var errBufferFull = errors.New("buffer full")

// The defaults of SyslogOptions.Buffer and BufferBytes.
const (
	DefaultSyslogBuffer      = 10000
	DefaultSyslogBufferBytes = 8 << 20
)

// Write queues rec for the collector; when the buffer is full (in
// messages or in bytes) it is dropped and counted. The stop record is
// always queued.
func (s *Syslog) Write(rec events.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec = s.loss.stamp(rec)
	msg, err := s.message(rec, time.Now())
	if err != nil {
		return err
	}
	if _, stop := rec.(*events.Stop); !stop && (len(s.queue) >= s.max || s.queueBytes+len(msg) > s.maxBytes) {
		s.loss.failed(rec, fmt.Errorf("%d messages (%d bytes) waiting for the collector: %w", len(s.queue), s.queueBytes, errBufferFull), true)
		return nil
	}
	if s.loss.unsaidRecords > 0 && !s.noticeQueued {
		// Say what was lost here, in order: the notice is made when sent.
		s.queue = append(s.queue, syslogMsg{notice: &events.OutputLost{}})
		s.noticeQueued = true
	}
	s.queue = append(s.queue, syslogMsg{b: msg, failures: failuresIn(rec)})
	s.queueBytes += len(msg)
	s.poke()
	return nil
}

// QueueBytes is how many bytes of messages wait for the collector.
func (s *Syslog) QueueBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueBytes
}

// pop removes the queue's first message.
func (s *Syslog) pop() {
	s.queueBytes -= len(s.queue[0].b)
	s.queue[0] = syslogMsg{} // no reference left for the collector
	s.queue = s.queue[1:]
	if len(s.queue) == 0 {
		s.queue = nil // the array behind it goes too
	}
}

func (s *Syslog) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// message is rec as an RFC 5424 message:
// <PRI>1 TIMESTAMP HOSTNAME bindwatch PROCID MSGID - MSG.
func (s *Syslog) message(rec events.Record, now time.Time) ([]byte, error) {
	body, err := s.form(rec)
	if err != nil {
		return nil, err
	}
	typ := rec.RecordType()
	if typ == "" {
		typ = "-" // RFC 5424's nil value
	}
	head := fmt.Sprintf("<%d>1 %s %s bindwatch %s %s - ", facilityLog*8+severity(typ),
		now.UTC().Format("2006-01-02T15:04:05.000000Z"), s.host, s.pid, typ)
	if s.network != "tcp" {
		// One datagram: a record too large for it is shortened, not lost.
		body = fitJSON(body, maxDatagram-len(head))
	}
	return append([]byte(head), body...), nil
}

// send delivers queued messages in order until Close, reconnecting with
// backoff; a message leaves the queue once written.
func (s *Syslog) send() {
	defer close(s.done)
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closing {
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-s.quit:
				return
			}
			s.mu.Lock()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		head := s.queue[0]
		if head.notice != nil {
			n := s.loss.notice(time.Now())
			if n == nil { // said already
				s.pop()
				s.noticeQueued = false
				s.mu.Unlock()
				continue
			}
			head.b, _ = s.message(n, n.Time)
			head.notice = n
		}
		s.mu.Unlock()

		var err error
		if conn != nil && !peerOpen(conn) {
			conn.Close() // the collector went away: do not write into the void
			conn = nil
		}
		if conn == nil {
			conn, err = s.dial()
		}
		if err == nil {
			err = s.writeMsg(conn, head.b)
		}
		s.mu.Lock()
		switch {
		case err == nil:
			s.pop()
			if head.notice != nil {
				s.noticeQueued = false
			}
			s.loss.wrote(head.notice)
			backoff = 100 * time.Millisecond
		case errors.Is(err, syscall.EMSGSIZE) && head.notice == nil:
			// Too large for a datagram: retrying will not help.
			s.pop()
			s.loss.failedCarrying(head.failures, err, true)
		default:
			s.loss.failedCarrying(head.failures, err, false)
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, syscall.EMSGSIZE) {
			if conn != nil {
				conn.Close()
				conn = nil
			}
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 2*time.Second)
			case <-s.closingCh:
				// Closing: try again soon while Close waits, not after a
				// long backoff.
				backoff = 50 * time.Millisecond
				select {
				case <-time.After(backoff):
				case <-s.quit:
					return
				}
			case <-s.quit:
				return
			}
		}
	}
}

// dial connects to the collector. It runs in the sending goroutine, the
// only one that changes s.network (under s.mu: Write reads it).
func (s *Syslog) dial() (net.Conn, error) {
	conn, err := net.DialTimeout(s.network, s.addr, 2*time.Second)
	if err != nil && s.network == "unixgram" && errors.Is(err, syscall.EPROTOTYPE) {
		s.mu.Lock()
		s.network = "unix" // a stream socket at the path
		s.mu.Unlock()
		conn, err = net.DialTimeout("unix", s.addr, 2*time.Second)
	}
	return conn, err
}

// peerOpen tells whether a stream connection's collector is still there:
// collectors never send on it, so readable means closed (EOF) or reset.
// Without this check, the first message written after the collector went
// away would be accepted by the kernel and lost.
func peerOpen(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = n > 0 || errors.Is(err, unix.EAGAIN)
		return true
	})
	return open
}

// writeMsg writes one message: alone in a datagram, or octet-counted on a
// stream ("LEN MSG", RFC 6587 3.4.1).
func (s *Syslog) writeMsg(conn net.Conn, msg []byte) error {
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if s.network == "tcp" || s.network == "unix" {
		msg = append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	}
	_, err := conn.Write(msg)
	return err
}

// Stats is what could not be sent.
func (s *Syslog) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loss.stats()
}

// closeWait is how long Close waits for the queue to drain: a stop must
// not wait on an absent collector (bindwatch stops within a second).
const closeWait = 500 * time.Millisecond

// Close sends what is queued — the stop record — waiting up to closeWait
// for the collector, then stops; what is left is said on standard error.
func (s *Syslog) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	close(s.closingCh)
	s.poke()
	select {
	case <-s.done:
	case <-time.After(closeWait):
		close(s.quit)
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		fmt.Fprintf(s.loss.warn, "bindwatch: %s: %d record%s could not be sent before exit (the collector is away)\n", s.loss.name, n, events.Plural(n))
	}
	return nil
}
