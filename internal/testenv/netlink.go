package testenv

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A little rtnetlink, so that tests can make interfaces and addresses in
// their own network namespace without iproute2 (a bare VM has only
// busybox, whose ip cannot make a veth pair). Everything works in the
// calling thread's network namespace (see InPrivateNetns).

// vethInfoPeer is VETH_INFO_PEER (include/uapi/linux/veth.h), which x/sys
// does not carry.
const vethInfoPeer = 1

// AddVethPair makes the veth pair name <-> peer and sets both up.
func AddVethPair(name, peer string) error {
	peerInfo := append(make([]byte, unix.SizeofIfInfomsg), rtattr(unix.IFLA_IFNAME, cstring(peer))...)
	linkInfo := append(rtattr(unix.IFLA_INFO_KIND, []byte("veth")),
		rtattr(unix.IFLA_INFO_DATA, rtattr(vethInfoPeer, peerInfo))...)
	body := make([]byte, unix.SizeofIfInfomsg) // ifinfomsg: AF_UNSPEC, all zero
	body = append(body, rtattr(unix.IFLA_IFNAME, cstring(name))...)
	body = append(body, rtattr(unix.IFLA_LINKINFO, linkInfo)...)
	if err := rtnetlink(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body); err != nil {
		return fmt.Errorf("add veth pair %s/%s: %w", name, peer, err)
	}
	for _, n := range []string{peer, name} {
		if err := linkUp(n); err != nil {
			return err
		}
	}
	return nil
}

// AddAddr assigns prefix (e.g. 2001:db8::1/64) to the interface name.
func AddAddr(name string, prefix netip.Prefix) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	family, addr := byte(unix.AF_INET), prefix.Addr().AsSlice()
	if prefix.Addr().Is6() {
		family = unix.AF_INET6
	}
	body := make([]byte, unix.SizeofIfAddrmsg)
	body[0], body[1] = family, byte(prefix.Bits())
	binary.NativeEndian.PutUint32(body[4:], uint32(ifc.Index))
	body = append(body, rtattr(unix.IFA_LOCAL, addr)...)
	body = append(body, rtattr(unix.IFA_ADDRESS, addr)...)
	if err := rtnetlink(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body); err != nil {
		return fmt.Errorf("add %s to %s: %w", prefix, name, err)
	}
	return nil
}

// Tentative reports whether the IPv6 address addr is still tentative (its
// duplicate address detection not finished), from
// /proc/thread-self/net/if_inet6; an error if it is not assigned.
func Tentative(addr netip.Addr) (bool, error) {
	b, err := os.ReadFile("/proc/thread-self/net/if_inet6")
	if err != nil {
		return false, err
	}
	want := fmt.Sprintf("%x", addr.As16())
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == want {
			flags, err := strconv.ParseUint(f[4], 16, 32)
			return flags&unix.IFA_F_TENTATIVE != 0, err
		}
	}
	return false, fmt.Errorf("%s is not assigned to any interface", addr)
}

// rtnetlink sends one request and waits for its acknowledgement.
func rtnetlink(typ uint16, flags uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence number
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	// The answer to a request with NLM_F_ACK is one NLMSG_ERROR message:
	// nlmsghdr, then the error code (0: done), then our request's header.
	if n < unix.SizeofNlMsghdr+4 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return fmt.Errorf("no acknowledgement from the kernel (%d bytes)", n)
	}
	if code := int32(binary.NativeEndian.Uint32(buf[unix.SizeofNlMsghdr:])); code != 0 {
		return unix.Errno(-code)
	}
	return nil
}

// rtattr is one netlink attribute, padded to 4 bytes.
func rtattr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cstring(s string) []byte { return append([]byte(s), 0) }
