package resolve

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
)

// The sock_diag (inet_diag) netlink ABI, from <linux/inet_diag.h>.
// golang.org/x/sys/unix has the netlink basics but not these structures.
const (
	inetDiagReqV2Size = 56 // struct inet_diag_req_v2
	inetDiagReqSize   = 60 // struct inet_diag_req (the compat request)
	inetDiagMsgSize   = 72 // struct inet_diag_msg

	inetDiagReqBytecode = 1  // INET_DIAG_REQ_BYTECODE request attribute
	inetDiagBCSEq       = 11 // INET_DIAG_BC_S_EQ: local port == op[1].no
	inetDiagBCJmp       = 1  // INET_DIAG_BC_JMP: always "no"
	inetDiagBCSGe       = 2  // INET_DIAG_BC_S_GE: local port >= op[1].no
	inetDiagBCSLe       = 3  // INET_DIAG_BC_S_LE: local port <= op[1].no
	inetDiagSKV6Only    = 11 // INET_DIAG_SKV6ONLY reply attribute (u8)

	// tcpDiagGetSock is the compat request (struct inet_diag_req) for
	// TCP sockets of both families: the kernel dumps it as family
	// AF_UNSPEC, one walk of each table (as ss(8) asks when no family is
	// given), where SOCK_DIAG_BY_FAMILY walks them once per family.
	tcpDiagGetSock = 18 // TCPDIAG_GETSOCK

	tcpTimeWait = 6
	tcpClose    = 7
	tcpListen   = 10
	// tcpBoundInactive is a pseudo-state (6.8+, 91051f003948 "tcp: Dump
	// bound-only sockets in inet_diag."): asking for it makes
	// inet_diag also dump TCP sockets that are bound but neither listening
	// nor connected, which otherwise sit in no table it walks.
	tcpBoundInactive = 13
)

// tcpStates selects every TCP state that occupies a local port, except the
// request sockets of a listener (SYN_RECV, NEW_SYN_RECV): they belong to the
// listener and would only repeat it.
const tcpStates = 1<<1 | 1<<2 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<tcpBoundInactive

// udpStates selects every UDP socket: unconnected ones report TCP_CLOSE,
// connected ones TCP_ESTABLISHED.
const udpStates = 0xffffffff

// diagSocket is one socket as inet_diag reports it.
type diagSocket struct {
	proto     string // "tcp" or "udp"
	family    int    // unix.AF_INET or unix.AF_INET6
	state     uint8  // TCP_* state number
	src       netip.Addr
	sport     uint16
	dst       netip.Addr
	dport     uint16
	ifindex   uint32 // SO_BINDTODEVICE, 0 if none
	expiresMS uint32 // TIME_WAIT: time left
	uid       uint32
	inode     uint32 // 0 for TIME_WAIT and orphaned sockets
	v6only    *bool  // AF_INET6 only
}

var netlinkSeq atomic.Uint32

// openSockDiag opens a NETLINK_SOCK_DIAG socket. It answers about the
// network namespace of the thread that creates it, for its whole life.
func openSockDiag() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("open sock_diag netlink socket: %w (bindwatch needs Linux with CONFIG_INET_DIAG)", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind sock_diag netlink socket: %w", err)
	}
	return fd, nil
}

// portFilter is inet_diag bytecode that keeps only sockets whose local port
// is port, so the kernel does the filtering and a host with 100,000 sockets
// returns only the few on that port. One S_EQ op (its operand is the next
// op's "no" field): on match jump 8 bytes to the end (accept); otherwise 12,
// past the end (reject).
func portFilter(port uint16) []byte { return portsFilter([]uint16{port}) }

// portsFilter is portFilter for any of ports: an S_EQ op per port, OR'ed
// as ss(8) compiles "sport = :a or sport = :b": each S_EQ but the last is
// followed by a JMP op, which the S_EQ's match falls onto (yes, 8) and
// which jumps to the end (accept); a mismatch jumps over the JMP (no, 12)
// to the next S_EQ, the last one's past the end (reject). The kernel's
// audit follows yes jumps, so every op must be on that chain: a match
// cannot jump straight to the end.
func portsFilter(ports []uint16) []byte {
	const eq, jmp = 8, 4
	bc := make([]byte, 0, len(ports)*(eq+jmp))
	ne := binary.NativeEndian
	for i, port := range ports {
		op := make([]byte, eq)
		op[0] = inetDiagBCSEq
		op[1] = eq                   // yes: onto the JMP (or the end)
		ne.PutUint16(op[2:], eq+jmp) // no: over the JMP (or past the end)
		ne.PutUint16(op[6:], port)   // op[1].no = port
		bc = append(bc, op...)
		if i < len(ports)-1 {
			rest := (len(ports)-1-i)*(eq+jmp) - jmp // the ops after this JMP
			j := make([]byte, jmp)
			j[0] = inetDiagBCJmp
			j[1] = jmp                            // yes: the next op (the audit's chain)
			ne.PutUint16(j[2:], uint16(rest+jmp)) // no: to the end, accept
			bc = append(bc, j...)
		}
	}
	return bc
}

// rangeFilter is inet_diag bytecode that keeps only sockets whose local
// port is within lo..hi: S_GE (match: onto the next op; else past the end,
// reject), then S_LE (match: the end, accept; else past it).
func rangeFilter(lo, hi uint16) []byte {
	const op = 8
	bc := make([]byte, 2*op)
	ne := binary.NativeEndian
	bc[0], bc[1] = inetDiagBCSGe, op
	ne.PutUint16(bc[2:], 2*op+4)
	ne.PutUint16(bc[6:], lo)
	bc[op], bc[op+1] = inetDiagBCSLe, op
	ne.PutUint16(bc[op+2:], op+4)
	ne.PutUint16(bc[op+6:], hi)
	return bc
}

// maxListedPorts is how many ports a dump's filter lists one by one. The
// kernel runs the filter on every socket of the namespace, so a list of n
// ports costs n comparisons a socket (1,500 UDP incidents polled 10 times
// a second against as many sockets took a third of a core); more ports
// are asked for as the range from the lowest to the highest, two
// comparisons, and the caller drops the sockets on ports it did not ask
// for.
const maxListedPorts = 16

// portsOrRange is the filter for ports: each listed, or their range.
func portsOrRange(ports []uint16) []byte {
	if len(ports) <= maxListedPorts {
		return portsFilter(ports)
	}
	return rangeFilter(slices.Min(ports), slices.Max(ports))
}

// dumpPort returns the sockets of one family and protocol bound to port in
// the network namespace of the netlink socket fd.
func dumpPort(fd int, family int, proto string, port uint16) ([]diagSocket, error) {
	return dumpPorts(fd, family, proto, []uint16{port})
}

// dumpPortBothFamilies returns the IPv4 and IPv6 sockets of proto bound to
// port in the network namespace of the netlink socket fd.
func dumpPortBothFamilies(fd int, proto string, port uint16) ([]diagSocket, error) {
	return dumpBothFamilies(fd, proto, portFilter(port), fmt.Sprintf("port %d", port))
}

// dumpBothFamilies is dumpFiltered for IPv4 and IPv6. TCP's sockets come
// from one dump of both families: the kernel's TCP tables hold both, and
// each dump walks them whole (the established hash alone is 262,144
// buckets on a host with a few GB, ~2 ms a walk here), so asking per
// family walked them twice. Should the compat request that does it be
// refused, each family is asked for on its own.
func dumpBothFamilies(fd int, proto string, bc []byte, what string) ([]diagSocket, error) {
	if proto == "tcp" {
		if socks, err := dumpFiltered(fd, unix.AF_UNSPEC, proto, bc, what); err == nil {
			return socks, nil
		}
	}
	var out []diagSocket
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		socks, err := dumpFiltered(fd, family, proto, bc, what)
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
	}
	return out, nil
}

// dumpPorts returns the sockets of one family and protocol bound to any of
// ports in the network namespace of the netlink socket fd — and, past
// maxListedPorts of them, to other ports in their range, which the caller
// drops: one dump, however many ports.
func dumpPorts(fd int, family int, proto string, ports []uint16) ([]diagSocket, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("sock_diag: no port to filter on")
	}
	return dumpFiltered(fd, family, proto, portsOrRange(ports), fmt.Sprintf("port %d", ports[0]))
}

// dumpFiltered returns the sockets of one family and protocol that the
// inet_diag bytecode bc keeps, in the network namespace of the netlink
// socket fd; what names the filter in errors.
func dumpFiltered(fd int, family int, proto string, bc []byte, what string) ([]diagSocket, error) {
	var protocol uint8
	var states uint32
	switch proto {
	case "tcp":
		protocol, states = unix.IPPROTO_TCP, tcpStates
	case "udp":
		protocol, states = unix.IPPROTO_UDP, udpStates
	default:
		return nil, fmt.Errorf("sock_diag: protocol %q is not supported (tcp or udp)", proto)
	}
	seq := netlinkSeq.Add(1)
	attrLen := unix.SizeofRtAttr + len(bc)
	// AF_UNSPEC: both families in one dump, through the compat request
	// (TCP only: it has no protocol field, its message type names TCP).
	msgType, reqSize := uint16(unix.SOCK_DIAG_BY_FAMILY), inetDiagReqV2Size
	if family == unix.AF_UNSPEC {
		if proto != "tcp" {
			return nil, fmt.Errorf("sock_diag: %s sockets of both families are asked for one family at a time", proto)
		}
		msgType, reqSize = tcpDiagGetSock, inetDiagReqSize
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+reqSize+attrLen)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], msgType)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(msg[8:], seq)
	req := msg[unix.NLMSG_HDRLEN:]
	if msgType == tcpDiagGetSock {
		// struct inet_diag_req: family, src_len, dst_len, ext, the
		// socket id (48 bytes, zero: no exact match), then the states.
		req[0] = unix.AF_UNSPEC
		ne.PutUint32(req[52:], states)
	} else {
		req[0] = uint8(family)
		req[1] = protocol
		ne.PutUint32(req[4:], states)
	}
	attr := req[reqSize:]
	ne.PutUint16(attr[0:], uint16(attrLen))
	ne.PutUint16(attr[2:], inetDiagReqBytecode)
	copy(attr[unix.SizeofRtAttr:], bc)

	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	var out []diagSocket
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			mlen := int(ne.Uint32(b[0:]))
			if mlen < unix.NLMSG_HDRLEN || mlen > len(b) {
				return nil, fmt.Errorf("sock_diag reply: malformed netlink message (length %d of %d)", mlen, len(b))
			}
			typ, mseq, data := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[unix.NLMSG_HDRLEN:mlen]
			b = b[min(len(b), nlmsgAlign(mlen)):]
			if mseq != seq {
				continue // a stale reply to an abandoned request
			}
			switch typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(data) >= 4 {
					if code := int32(ne.Uint32(data)); code != 0 {
						return nil, fmt.Errorf("sock_diag %s %s: %w", proto, what, unix.Errno(-code))
					}
				}
				return out, nil
			case msgType: // each socket comes back under the request's type
				if s, ok := parseDiagMsg(data, proto); ok {
					out = append(out, s)
				}
			}
		}
	}
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// parseDiagMsg decodes struct inet_diag_msg and the attributes after it.
func parseDiagMsg(b []byte, proto string) (diagSocket, bool) {
	if len(b) < inetDiagMsgSize {
		return diagSocket{}, false
	}
	ne := binary.NativeEndian
	s := diagSocket{
		proto:  proto,
		family: int(b[0]),
		state:  b[1],
		// inet_diag_sockid: ports and addresses in network byte order.
		sport:     binary.BigEndian.Uint16(b[4:]),
		dport:     binary.BigEndian.Uint16(b[6:]),
		ifindex:   ne.Uint32(b[40:]),
		expiresMS: ne.Uint32(b[52:]),
		uid:       ne.Uint32(b[64:]),
		inode:     ne.Uint32(b[68:]),
	}
	if s.family == unix.AF_INET6 {
		s.src = netip.AddrFrom16([16]byte(b[8:24]))
		s.dst = netip.AddrFrom16([16]byte(b[24:40]))
	} else {
		s.src = netip.AddrFrom4([4]byte(b[8:12]))
		s.dst = netip.AddrFrom4([4]byte(b[24:28]))
	}
	for attrs := b[inetDiagMsgSize:]; len(attrs) >= unix.SizeofRtAttr; {
		l := int(ne.Uint16(attrs[0:]))
		typ := ne.Uint16(attrs[2:])
		if l < unix.SizeofRtAttr || l > len(attrs) {
			break
		}
		if typ == inetDiagSKV6Only && l > unix.SizeofRtAttr {
			v := attrs[unix.SizeofRtAttr] != 0
			s.v6only = &v
		}
		attrs = attrs[min(len(attrs), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return s, true
}

// stateName names a socket state the way bindwatch reports it: TCP states
// as the kernel names them, except a TCP socket that is only bound (CLOSE
// with a port) is "BOUND"; an unconnected UDP socket is "UNCONN", as in ss.
func stateName(proto string, state uint8) string {
	if proto == "udp" {
		switch state {
		case tcpClose:
			return "UNCONN"
		case 1:
			return "ESTABLISHED"
		}
	}
	names := [...]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
		5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "BOUND", 8: "CLOSE_WAIT", 9: "LAST_ACK",
		10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
	if int(state) < len(names) && names[state] != "" {
		return names[state]
	}
	return fmt.Sprintf("STATE_%d", state)
}

// probedDiagListsBoundOnly is probeDiagListsBoundOnly's answer, asked once.
var probedDiagListsBoundOnly = sync.OnceValue(probeDiagListsBoundOnly)

// probeDiagListsBoundOnly binds a TCP socket to 127.0.0.1 on a port the
// kernel picks, without listening, and reports whether sock_diag lists it
// when asked for tcpBoundInactive: from 6.8 it does; before, an unknown
// state bit is ignored and the socket is in none of the tables it walks.
// The socket is closed at once. Any error reports false: the task iterator
// then looks for such sockets itself, which is only slower.
func probeDiagListsBoundOnly() bool {
	if host.ReleaseAtLeast(6, 8) { // no need to ask (the probe is a ~1.5 ms walk)
		return true
	}
	// A socket, sock_diag's too, belongs to the netns of the thread that
	// opens it: both are opened on this one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	bound, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	diag, err := openSockDiag()
	if err != nil {
		return false
	}
	defer unix.Close(diag)
	socks, err := dumpPort(diag, unix.AF_INET, "tcp", uint16(bound.Port))
	if err != nil {
		return false
	}
	for _, s := range socks {
		if uint64(s.inode) == st.Ino {
			return true
		}
	}
	return false
}
