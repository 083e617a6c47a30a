package deploy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// DefaultAddrs are the addresses a port is checked on when none is given:
// the IPv4 wildcard, and the IPv6 wildcard as a program that binds [::]
// gets it (dual-stack unless net.ipv6.bindv6only=1). Each is bound on its
// own, so the port counts as free only when a server could bind either —
// and the dual-stack one overlaps every IPv4 and IPv6 address, so anything
// on the port that would stop some server stops this check.
var DefaultAddrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}

// BindOptions say how the caller's program will bind the port, so that
// the check is the kernel's answer for that program.
type BindOptions struct {
	// Addrs to bind; empty means DefaultAddrs (where the IPv6 wildcard is
	// skipped on a host without IPv6).
	Addrs []netip.Addr
	// ReuseAddr sets SO_REUSEADDR before bind(), as the program does.
	ReuseAddr bool
}

func (o BindOptions) addrs() (addrs []netip.Addr, defaults bool) {
	if len(o.Addrs) == 0 {
		return DefaultAddrs, true
	}
	return o.Addrs, false
}

// Refusal is a bind() or listen() the kernel refused while checking a port.
type Refusal struct {
	Port    Port
	Addr    netip.Addr
	Syscall string // "bind" or "listen"
	Errno   syscall.Errno
	// V6Only is the probe socket's IPV6_V6ONLY (IPv6 addresses only).
	V6Only *bool
	// ReuseAddr is whether the probe set SO_REUSEADDR.
	ReuseAddr bool
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s %s/%s: %v", r.Syscall, netip.AddrPortFrom(r.Addr, r.Port.Num), r.Port.Proto, r.Errno)
}

// Short says what was tried and what the kernel said, for people: "a
// test bind() on 0.0.0.0 got EADDRINUSE".
func (r *Refusal) Short() string {
	return fmt.Sprintf("a test %s() on %s got %s", r.Syscall, r.Addr, errnoName(r.Errno))
}

// InUse reports whether the port is held by another socket (EADDRINUSE),
// as opposed to not usable at all from here.
func (r *Refusal) InUse() bool { return r.Errno == unix.EADDRINUSE }

// Hint says what to do about a refusal other than EADDRINUSE.
func (r *Refusal) Hint() string {
	switch r.Errno {
	case unix.EACCES:
		return fmt.Sprintf("port %d is privileged here (below net.ipv4.ip_unprivileged_port_start): run bindwatch with the privileges your service has (sudo), or check with a port ≥ 1024", r.Port.Num)
	case unix.EADDRNOTAVAIL:
		return fmt.Sprintf("%s is not assigned to any interface in this network namespace: give --addr an address of this host (ip -brief addr), or the wildcard 0.0.0.0 / ::", r.Addr)
	}
	return "report this: bindwatch only expects EADDRINUSE, EACCES or EADDRNOTAVAIL here"
}

// Bindable checks whether the caller's program could bind p right now, by
// doing what it would: for each address, a fresh socket with its options
// is bound (for TCP also put into listen(), which a listener on the port
// refuses even when bind() passed), then closed at once. A listening
// socket closed before any connection leaves no TIME_WAIT behind.
//
// It returns nil when every address can be bound, else the first refusal.
// netns is the network namespace to check in (an open /proc/PID/ns/net
// or /run/netns file), nil for bindwatch's own. The error is for a check
// that could not be made (socket(), setns()).
func Bindable(netns *os.File, p Port, opts BindOptions) (*Refusal, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	addrs, defaults := opts.addrs()
	for _, addr := range addrs {
		ref, err := bindOnce(netns, p, addr, opts.ReuseAddr)
		if defaults && addr.Is6() && errors.Is(err, unix.EAFNOSUPPORT) {
			continue // no IPv6 on this host: nothing can bind [::] here
		}
		if err != nil || ref != nil {
			return ref, err
		}
	}
	return nil, nil
}

func bindOnce(netns *os.File, p Port, addr netip.Addr, reuseAddr bool) (*Refusal, error) {
	var family int
	var sa unix.Sockaddr
	if addr.Is6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: addr.As16(), Port: int(p.Num)}
	} else {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: addr.As4(), Port: int(p.Num)}
	}
	typ := unix.SOCK_STREAM
	if p.Proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := socketIn(netns, family, typ)
	if err != nil {
		return nil, fmt.Errorf("check %s on %s: socket: %w", p, addr, err)
	}
	defer unix.Close(fd)
	// Mark the test bind, so that a running tracer does not report it as a
	// failure of bindwatch. Setting the mark takes CAP_NET_ADMIN: run as a
	// user, the test bind is that user's and reported like any other.
	host.MarkProbe(fd)
	if reuseAddr {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return nil, fmt.Errorf("check %s on %s: set SO_REUSEADDR: %w", p, addr, err)
		}
	}
	ref := &Refusal{Port: p, Addr: addr, ReuseAddr: reuseAddr}
	if family == unix.AF_INET6 {
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err == nil {
			v6only := v == 1
			ref.V6Only = &v6only
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return refused(ref, "bind", err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 1); err != nil {
			return refused(ref, "listen", err)
		}
	}
	return nil, nil
}

func refused(ref *Refusal, call string, err error) (*Refusal, error) {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return nil, fmt.Errorf("check %s on %s: %s: %w", ref.Port, ref.Addr, call, err)
	}
	ref.Syscall, ref.Errno = call, errno
	return ref, nil
}

// socketIn creates a socket in the network namespace netns (nil: the
// current one). A socket belongs for life to the namespace it was created
// in, so only socket() needs to run inside it.
func socketIn(netns *os.File, family, typ int) (int, error) {
	if netns == nil {
		return unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	}
	fd := -1
	err := host.InNetns(netns, func() error {
		var err error
		fd, err = unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil && fd >= 0 {
		unix.Close(fd) // made, but the thread could not return from the namespace
		fd = -1
	}
	return fd, err
}

// openNetns opens ns to check ports in it, nil for bindwatch's own
// (own). The open file keeps the namespace alive: a port whose last
// process has exited is then found free, not gone.
func openNetns(ns host.Netns, own uint32) (*os.File, error) {
	if ns.Inode == own {
		return nil, nil
	}
	return ns.Open()
}

func errnoName(e syscall.Errno) string { return events.ErrnoName(e) }
