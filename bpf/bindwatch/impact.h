// SPDX-License-Identifier: GPL-2.0
/*
 * Client impact of an open incident: connections refused and datagrams
 * dropped at a port where nothing listens.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/* ---- incidents: client impact (refused connections, dropped datagrams) ---
 *
 * A SYN or a datagram to a port where nothing listens is dropped with
 * reason NO_SOCKET (the kernel answers with a RST or an ICMP port
 * unreachable). For ports with an open incident the kernel counts them
 * here, per port and kind, with the first and last time: a SYN flood
 * costs one hash update each, never a ring record. skb:kfree_skb carries
 * the drop reason from 5.17 on; user space loads this program only there
 * (and says so), older kernels do not measure it.
 */
struct impact_count {
	__u64 count;
	__u64 first_ns;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BW_MAX_INCIDENTS);
	__type(key, struct holder_key);
	__type(value, struct impact_count);
} incident_impact SEC(".maps");

SEC("tp_btf/kfree_skb")
int BPF_PROG(incident_noskb_drop, struct sk_buff *skb, void *location, int reason)
{
	struct holder_key key = {};
	struct impact_count *c, init = {};
	unsigned char *head;
	struct net *net;
	__u64 *cookie;
	__u16 th, nh, proto, dport;
	__u8 l4;
	__u64 now;

	if (reason != bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET))
		return 0;
	if (!incidents_open())
		return 0;
	head = BPF_CORE_READ(skb, head);
	th = BPF_CORE_READ(skb, transport_header);
	nh = BPF_CORE_READ(skb, network_header);
	proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (proto == 0x0800) { /* ETH_P_IP */
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return 0;
		l4 = ip.protocol;
	} else if (proto == 0x86DD) { /* ETH_P_IPV6 */
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return 0;
		l4 = ip6.nexthdr; /* extension headers: not counted */
	} else {
		return 0;
	}
	if (l4 != IPPROTO_TCP && l4 != IPPROTO_UDP)
		return 0;
	/* Both headers start with the source and destination ports. */
	if (bpf_probe_read_kernel(&dport, sizeof(dport), head + th + 2))
		return 0;
	/* TCP: only a connection attempt (SYN without ACK) is refused; the
	 * other segments of dead connections meet no socket too. */
	if (l4 == IPPROTO_TCP) {
		__u8 flags;

		if (bpf_probe_read_kernel(&flags, sizeof(flags), head + th + 13))
			return 0;
		if ((flags & 0x12) != 0x02) /* SYN, not ACK */
			return 0;
	}
	key.proto = l4;
	key.port = bpf_ntohs(dport);
	net = BPF_CORE_READ(skb, dev, nd_net.net);
	if (!net)
		return 0;
	key.netns = BPF_CORE_READ(net, ns.inum);
	/* The same namespace, not a new one that got a dead one's inode. */
	cookie = bpf_map_lookup_elem(&incident_ports, &key);
	if (!cookie || (*cookie && *cookie != net_cookie(net)))
		return 0;
	now = bpf_ktime_get_boot_ns();
	c = bpf_map_lookup_elem(&incident_impact, &key);
	if (!c) {
		init.first_ns = now;
		bpf_map_update_elem(&incident_impact, &key, &init, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&incident_impact, &key);
		if (!c)
			return 0;
	}
	__sync_fetch_and_add(&c->count, 1);
	c->last_ns = now;
	return 0;
}
