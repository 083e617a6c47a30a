package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Bounds on asking the service manager. One failure burst (a program
// retrying its bind, a restart loop) asks once: a listing is reused for
// socketListTTL, and systemctl runs at most once per socketListGap
// whatever the answers, each run cut off after socketListTimeout with at
// most maxSocketList bytes read.
const (
	socketListTTL     = 5 * time.Second
	socketListGap     = time.Second
	socketListTimeout = 2 * time.Second
	maxSocketList     = 4 << 20
)

// systemctlPaths are where the system's own systemctl is looked for: fixed
// paths, never $PATH, and never a container's filesystem (bindwatch's own
// root is the one it runs in).
var systemctlPaths = []string{"/usr/bin/systemctl", "/bin/systemctl"}

// SocketUnits names the socket unit a service manager holds a listener
// for (socket activation), by asking that manager: the system's own
// `systemctl list-sockets --output=json` (systemd 246 and later), which
// speaks to pid 1 over its private bus socket (/run/systemd/private). It
// is safe for concurrent use.
//
// Only the system's manager is asked: pid 1 of the pid namespace
// bindwatch's /proc shows, seen holding the socket there. A container's
// manager (pid 1 of another pid namespace) is never asked — its answer,
// and any systemctl in its filesystem, are the container's to forge — and
// neither is a user's manager, whose bus socket lies in a directory that
// user controls.
type SocketUnits struct {
	systemctl []string // candidates; the first that exists runs
	timeout   time.Duration

	mu   sync.Mutex
	at   time.Time // of the last run
	list []socketListen
	err  error // of the last run
}

// socketListen is one row of systemctl list-sockets.
type socketListen struct {
	Listen string `json:"listen"`
	Type   string `json:"type"`
	Unit   string `json:"unit"`
}

// NewSocketUnits returns a SocketUnits. It runs nothing until asked.
func NewSocketUnits() *SocketUnits {
	return &SocketUnits{systemctl: systemctlPaths, timeout: socketListTimeout}
}

// Holder fills p.SocketUnit when p is the system's service manager (pid
// 1, systemd) holding h, with the socket unit the manager says listens on
// h's address. It returns why it could not ("" when it did, or when p is
// no manager it asks): for the diagnosis to say.
func (s *SocketUnits) Holder(h *events.Holder, p *events.Process) (note string) {
	if p.Comm != "systemd" || p.SocketUnit != "" {
		return ""
	}
	if p.PID != 1 {
		if p.UID != 0 || slices.Contains(p.Cmdline, "--user") {
			return "bindwatch asks only the system's service manager, not a user's, which socket unit holds a port"
		}
		return "" // a container's manager: not asked
	}
	units, err := s.Lookup(h.Proto, h.Addr, h.Port)
	switch {
	case err != nil:
		return err.Error()
	case len(units) == 0:
		return fmt.Sprintf("systemctl list-sockets lists no socket unit on %s/%s", addrPort(h.Addr, h.Port), h.Proto)
	case len(units) > 1:
		return fmt.Sprintf("systemctl list-sockets lists several socket units on %s/%s: %s", addrPort(h.Addr, h.Port), h.Proto, events.Escape(strings.Join(units, ", ")))
	}
	p.SocketUnit = units[0]
	return ""
}

// Lookup returns the socket units of the system's manager that listen on
// addr:port (proto tcp or udp), from a listing at most socketListTTL old
// (or socketListGap, when it has none there: the unit may be newer).
func (s *SocketUnits) Lookup(proto, addr string, port uint16) ([]string, error) {
	want, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("socket unit of %s/%s: %w", addr, proto, err)
	}
	typ := map[string]string{"tcp": "Stream", "udp": "Datagram"}[proto]
	if typ == "" {
		return nil, fmt.Errorf("socket unit of %s/%s: only tcp and udp sockets are looked up", addrPort(addr, port), proto)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := !s.at.IsZero() && time.Since(s.at) < socketListTTL
	units := s.match(typ, want.Unmap().WithZone(""), port)
	if !fresh || s.err == nil && len(units) == 0 && time.Since(s.at) >= socketListGap {
		s.refresh()
		units = s.match(typ, want.Unmap().WithZone(""), port)
	}
	if s.err != nil {
		return nil, s.err
	}
	return units, nil
}

func (s *SocketUnits) match(typ string, want netip.Addr, port uint16) []string {
	var units []string
	for _, l := range s.list {
		ap, err := netip.ParseAddrPort(l.Listen)
		if err != nil || l.Type != typ || ap.Port() != port || ap.Addr().Unmap().WithZone("") != want {
			continue
		}
		if !slices.Contains(units, l.Unit) {
			units = append(units, l.Unit)
		}
	}
	return units
}

// refresh runs systemctl list-sockets, at most once per socketListGap.
func (s *SocketUnits) refresh() {
	if !s.at.IsZero() && time.Since(s.at) < socketListGap {
		return
	}
	s.at = time.Now()
	s.list, s.err = nil, nil
	path := ""
	for _, p := range s.systemctl {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			path = p
			break
		}
	}
	if path == "" {
		s.err = fmt.Errorf("no systemctl to ask the service manager which socket unit it is (looked for %s)", strings.Join(s.systemctl, ", "))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	out, err := runSystemctl(ctx, path, s.timeout)
	if err != nil {
		s.err = fmt.Errorf("ask the service manager which socket unit it is: %w", err)
		return
	}
	var rows []socketListen
	if err := json.Unmarshal(out, &rows); err != nil {
		s.err = fmt.Errorf("ask the service manager which socket unit it is: %s list-sockets --output=json: %w (systemd before 246 has no JSON tables)", path, err)
		return
	}
	for _, r := range rows {
		if validSocketUnit(r.Unit) {
			s.list = append(s.list, r)
		}
	}
}

// validSocketUnit accepts a socket unit's name as systemd allows it:
// printable, no slash, at most 255 bytes, ending in .socket.
func validSocketUnit(u string) bool {
	name, ok := strings.CutSuffix(u, ".socket")
	if !ok || name == "" || len(u) > 255 || strings.ContainsRune(u, '/') {
		return false
	}
	return strings.IndexFunc(u, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' }) < 0
}

// runSystemctl runs systemctl list-sockets with a clean environment and
// a bounded output, killed when ctx ends.
func runSystemctl(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, "list-sockets", "--all", "--full", "--no-legend", "--no-pager", "--show-types", "--output=json")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "SYSTEMD_LOG_LEVEL=err"}
	cmd.WaitDelay = 500 * time.Millisecond
	var out, stderr capped
	out.max, stderr.max = maxSocketList, 4<<10
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s list-sockets: no answer within %s", path, timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return nil, fmt.Errorf("%s list-sockets: %w: %s", path, err, events.Escape(msg))
	}
	if out.over {
		return nil, fmt.Errorf("%s list-sockets: more than %d bytes", path, maxSocketList)
	}
	return out.Bytes(), nil
}

// capped is a buffer that keeps at most max bytes and says when it
// dropped some.
type capped struct {
	bytes.Buffer
	max  int
	over bool
}

// Write never fails: what is past max is dropped (and noted), so that the
// writer is not blocked.
func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.over = true
		c.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

func addrPort(addr string, port uint16) string {
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}
