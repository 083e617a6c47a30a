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

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/host"

	"golang.org/x/sys/unix"
)

// netnsAddrs lists the addresses of every interface in h's namespace.
func (r *Resolver) netnsAddrs(h *netnsHandle) ([]diagnose.LocalAddr, error) {
	var out []diagnose.LocalAddr
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
				out = append(out, diagnose.LocalAddr{Addr: ip, Iface: ifc.Name, Tentative: tentative[ip]})
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

// ephemeralPorts reads net.ipv4.ip_local_port_range and
// ip_local_reserved_ports of h's namespace.
func (r *Resolver) ephemeralPorts(h *netnsHandle) (diagnose.EphemeralPorts, error) {
	var e diagnose.EphemeralPorts
	err := inNetns(h, r.netns.own, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return fmt.Errorf("ip_local_port_range %q: want two numbers", b)
		}
		lo, err1 := strconv.Atoi(f[0])
		hi, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("ip_local_port_range %q: want two numbers", b)
		}
		// Absent before 2.6.35; the range alone still says a lot.
		res, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports")
		e = diagnose.EphemeralPorts{Lo: lo, Hi: hi, Reserved: strings.TrimSpace(string(res))}
		return nil
	})
	if err != nil {
		return diagnose.EphemeralPorts{}, fmt.Errorf("read net.ipv4.ip_local_port_range in network namespace %d: %w", h.Inode, err)
	}
	return e, nil
}

// Ephemeral returns the ephemeral port range of the network namespace ns,
// for `who` and `wait-free` to warn about a port that outgoing connections
// may take.
func (r *Resolver) Ephemeral(ns host.Netns) (diagnose.EphemeralPorts, error) {
	h, err := r.netns.acquire(ns.Path, 0, ns.Inode)
	if err != nil {
		return diagnose.EphemeralPorts{}, err
	}
	defer r.netns.release(h)
	return r.ephemeralPorts(h)
}

// EphemeralNote warns, for `who` and `wait-free`, about a port that
// outgoing connections may take as their local port (in the range, not
// reserved), held or not: "" when they cannot, or the range is unknown.
// The sysctl line is for bindwatch's own namespace.
func EphemeralNote(e diagnose.EphemeralPorts, port uint16) string {
	if !e.Exposed(int(port)) {
		return ""
	}
	return fmt.Sprintf("port %d lies in the ephemeral port range (net.ipv4.ip_local_port_range %s) and is not reserved: outgoing connections may take it as their local port at any time; reserve it with `sysctl -w %s`, or use a port outside the range",
		port, e.RangeText(), e.ReserveSetting(int(port)))
}
