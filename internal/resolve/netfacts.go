package resolve

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NetnsFacts is what a diagnosis needs to know about the failing socket's
// network namespace besides the holders.
type NetnsFacts struct {
	// Addrs are the addresses assigned to its interfaces (EADDRNOTAVAIL).
	Addrs []LocalAddr
	// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start there
	// (EACCES); 0 when unknown (a real 0 makes EACCES impossible anyway).
	UnprivilegedPortStart int
}

// LocalAddr is one address assigned to an interface.
type LocalAddr struct {
	Addr  netip.Addr
	Iface string
	// Tentative: an IPv6 address whose duplicate address detection has not
	// finished (or failed); bind() refuses it with EADDRNOTAVAIL.
	Tentative bool
}

// netnsAddrs lists the addresses of every interface in h's namespace.
func (r *Resolver) netnsAddrs(h *netnsHandle) ([]LocalAddr, error) {
	var out []LocalAddr
	err := inNetns(h, r.netns.own, func() error {
		// Go's net package asks the kernel over a NETLINK_ROUTE socket
		// (RTM_GETLINK, RTM_GETADDR) opened on this thread, so in this netns.
		ifaces, err := net.Interfaces()
		if err != nil {
			return err
		}
		tentative := tentativeIPv6()
		for _, ifc := range ifaces {
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				ipn, ok := a.(*net.IPNet)
				if !ok {
					continue
				}
				ip, ok := netip.AddrFromSlice(ipn.IP)
				if !ok {
					continue
				}
				if ip.Is4In6() {
					ip = ip.Unmap()
				}
				out = append(out, LocalAddr{Addr: ip, Iface: ifc.Name, Tentative: tentative[ip]})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses in network namespace %d: %w", h.Inode, err)
	}
	return out, nil
}

// tentativeIPv6 reads the IPv6 addresses flagged tentative or dadfailed in
// the calling thread's network namespace (/proc/thread-self/net, not
// /proc/self/net, which follows the thread group leader).
func tentativeIPv6() map[netip.Addr]bool {
	out := make(map[netip.Addr]bool)
	f, err := os.Open("/proc/thread-self/net/if_inet6")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address ifindex prefixlen scope flags name, all hex
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		raw, err := hex.DecodeString(fields[0])
		if err != nil || len(raw) != 16 {
			continue
		}
		flags, err := strconv.ParseUint(fields[4], 16, 32)
		if err != nil {
			continue
		}
		if flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			out[netip.AddrFrom16([16]byte(raw))] = true
		}
	}
	return out
}

// unprivilegedPortStart reads net.ipv4.ip_unprivileged_port_start of h's
// namespace: net sysctls answer for the namespace of the thread that opens
// them.
func (r *Resolver) unprivilegedPortStart(h *netnsHandle) (int, error) {
	var v int
	err := inNetns(h, r.netns.own, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		if err != nil {
			return err
		}
		v, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read net.ipv4.ip_unprivileged_port_start in network namespace %d: %w", h.Inode, err)
	}
	return v, nil
}
