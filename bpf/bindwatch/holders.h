// SPDX-License-Identifier: GPL-2.0
/*
 * The holder registry: the last socket to take each port, its lineage (how
 * its process and parent ended), recorded on every successful listen() or
 * bind() and copied into a failure's event.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/*
 * Holder registry: the last socket to take each (netns, proto, port) — a
 * TCP listener when its listen() succeeds, a UDP socket when its bind()
 * succeeds (UDP has no listen(): bound is holding). A failure looks its
 * port up here and, if that socket is still bound at this instant, carries
 * its owner in the event — so the holder is named even if it exits before
 * user space gets to look. TCP sockets bound but not listening are not
 * recorded: every TCP server passes through that state on its way to
 * listen(), and recording it would cost each of them a map update.
 */
struct holder_map {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct holder_key);
	__type(value, struct holder_rec);
};

/*
 * One map per protocol: a DNS resolver that binds a fresh UDP port for every
 * query churns its LRU map by thousands of entries a second, and must not
 * evict the TCP listeners, which are recorded once and stay for days.
 */
struct holder_map tcp_holders SEC(".maps");
struct holder_map udp_holders SEC(".maps");

/*
 * The holder clock: when a holder took its port is read on every successful
 * UDP bind(), and the boot clock's TSC read was about a quarter of what
 * recording one cost (~40 ns of ~160, 6.18 in a VM). Where Go knows the
 * tick rate (holder_hz, CONFIG_HZ) the registry keeps jiffies instead, a
 * load; a copy into an event turns them into the boot clock against the
 * event's own time (holder_bound_ns), to within a tick (1-10 ms). With
 * holder_hz 0 it keeps the boot clock, and the verifier prunes the rest.
 */
volatile const __u32 holder_hz;

static __always_inline __u64 holder_clock(void)
{
	return holder_hz ? bpf_jiffies64() : bpf_ktime_get_boot_ns();
}

/* A registry record's bound time on the boot clock, for an event stamped
 * now_ns (the boot clock, read just before). */
static __always_inline __u64 holder_bound_ns(__u64 bound, __u64 now_ns)
{
	__u64 ago;

	if (!holder_hz || !bound)
		return bound;
	ago = bpf_jiffies64() - bound;
	/* In whole seconds first: ticks * 10^9 overflows after 213 days at
	 * 1000 Hz, and a holder may have held its port that long. */
	ago = ago / holder_hz * 1000000000ULL + ago % holder_hz * 1000000000ULL / holder_hz;
	/* 1, not 0 (which says "not known"), for a time before boot. */
	return ago < now_ns ? now_ns - ago : 1;
}

static __always_inline void *holder_map_of(__u8 proto)
{
	return proto == IPPROTO_UDP ? (void *)&udp_holders : (void *)&tcp_holders;
}

/*
 * Lineage: how the processes that took a TCP port ended, and their parents
 * at that moment. A recorded listener outlives its process, and what became
 * of that process is what tells a running daemon from a leftover: a
 * daemon's launcher listens, forks and exits with status 0 at once, while a
 * leftover's instance was killed, failed, or exited long after it left its
 * socket to a child. record_holder_of() notes the listener and its parent;
 * lineage_exit() writes when and how each ended; attach_holder() copies
 * both into a failure. LRU: a user who listens on thousands of ports evicts
 * entries, and the diagnosis then lacks the evidence — it never calls a
 * holder a leftover without it. UDP binds are not noted: they are frequent
 * (a resolver's every query), and this would cost each of them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct lineage_val);
} lineage SEC(".maps");

static __always_inline void note_lineage(__u32 tgid, __u64 start_ns)
{
	struct lineage_val v = { .start_ns = start_ns }, *old;

	if (tgid <= 1) /* init never exits */
		return;
	old = bpf_map_lookup_elem(&lineage, &tgid);
	if (old && old->start_ns == start_ns && !old->exit_ns)
		return;
	bpf_map_update_elem(&lineage, &tgid, &v, BPF_ANY);
}

/* Copy tgid's lineage entry into out when it is the process that started at start_ns. */
static __always_inline void copy_lineage(struct lineage_val *out, __u32 tgid, __u64 start_ns)
{
	struct lineage_val *v = bpf_map_lookup_elem(&lineage, &tgid);

	if (v && v->exit_ns && (!start_ns || v->start_ns == start_ns))
		__builtin_memcpy(out, v, sizeof(*out));
}

/* Copy the registry's holder into the event if it still holds the port now. */
static __always_inline void attach_holder(struct event *e, struct sock *failing)
{
	struct holder_key key = { .netns = e->netns, .port = e->port, .proto = port_space(e->protocol) };
	struct holder_rec *rec;
	struct sock *sk;
	__u64 inode;

	if (!record_holders || e->err != EADDRINUSE)
		return;
	rec = bpf_map_lookup_elem(holder_map_of(key.proto), &key);
	if (!rec || rec->sk == (__u64)failing)
		return;
	/*
	 * The recorded socket may be closed and its memory reused: on unhash the
	 * kernel zeroes inet_num (__inet_put_port, udp_lib_unhash) and
	 * sock_orphan() clears sk_socket (inode 0), so "same port, an inode"
	 * means still bound right now; a recorded inode must match too. A UDP
	 * bind's record has none (see record_holder_of): memory reused by a
	 * newer socket bound to this port would have been recorded over it.
	 */
	sk = (struct sock *)rec->sk;
	if (BPF_CORE_READ(sk, __sk_common.skc_num) != e->port)
		return;
	inode = sock_inode(sk);
	if (!inode || (rec->inode && inode != rec->inode))
		return;
	__builtin_memcpy(&e->holder, rec, sizeof(*rec));
	e->holder.inode = inode;
	e->holder.bound_ns = holder_bound_ns(rec->bound_ns, e->ts_ns);
	e->has_holder = 1;
	copy_lineage(&e->holder_exit, rec->tgid, rec->start_ns);
	copy_lineage(&e->parent_exit, rec->ppid, 0);
}

/* The registry's protocol for sk: TCP (MPTCP shares its ports), UDP, or 0. */
static __always_inline __u8 holder_proto(struct sock *sk, bool direct)
{
	__u16 protocol = BW_READ(direct, sk, sk_protocol);

	if (protocol == IPPROTO_UDP)
		return IPPROTO_UDP;
	return port_space(protocol) == IPPROTO_TCP ? IPPROTO_TCP : 0;
}

static __always_inline void note_shared(struct sock *sk, struct holder_key *key, struct holder_rec *old, struct holder_rec *rec);

/* Record task's holding socket sk (of protocol proto) for attach_holder();
 * direct: task and sk are typed, for BW_READ. */
static __always_inline void record_holder_of(struct task_struct *task, struct sock *sk, __u8 proto, bool seeding,
					     bool direct)
{
	struct holder_key key = {};
	struct holder_rec rec = {}, *old;
	void *map;
	__u16 family = BW_READ(direct, sk, __sk_common.skc_family);

	if (family != AF_INET && family != AF_INET6)
		return;
	rec.family = family;
	sock_local_addr(sk, family, rec.addr, &rec.port, direct);
	key.netns = sock_netns(sk, direct);
	key.port = rec.port;
	key.proto = proto;
	/*
	 * A live bind()/listen() is the current task's: the pid, uid and comm
	 * helpers are cheaper than reading them through task_struct, and the
	 * success path of every UDP bind() pays for this function.
	 */
	if (seeding) {
		rec.tgid = BPF_CORE_READ(task, tgid);
		rec.uid = BPF_CORE_READ(task, cred, uid.val);
		BPF_CORE_READ_STR_INTO(&rec.comm, task, comm);
	} else {
		rec.tgid = bpf_get_current_pid_tgid() >> 32;
		rec.uid = (__u32)bpf_get_current_uid_gid();
		bpf_get_current_comm(&rec.comm, sizeof(rec.comm));
		rec.bound_ns = holder_clock(); /* seeded: 0, not known */
	}
	rec.sk = (__u64)sk;
	/*
	 * The inode sits on a cache line of its own that bind() does not touch:
	 * reading it costs a UDP bind() more than everything else here, so a
	 * live UDP bind leaves it to attach_holder(), at failure time.
	 */
	if (seeding || proto != IPPROTO_UDP)
		rec.inode = sock_inode(sk);
	rec.start_ns = BW_READ2(direct, task, group_leader, start_boottime);
	rec.ppid = BW_READ2(direct, task, real_parent, tgid);
	if (proto == IPPROTO_TCP) {
		note_lineage(rec.tgid, rec.start_ns);
		note_lineage(rec.ppid, BPF_CORE_READ(task, real_parent, group_leader, start_boottime));
	}

	/* Overwrite an existing entry in place: no LRU node to allocate. */
	map = holder_map_of(proto);
	old = seeding ? NULL : bpf_map_lookup_elem(map, &key);
	if (old) {
		/*
		 * Another process's socket joins the port: silent sharing when
		 * the kernel let it in through SO_REUSEPORT. The pid compare
		 * comes first (a process re-listening, or a forking server's
		 * own sockets, stops there), then the flag, so a bind() or
		 * listen() without SO_REUSEPORT pays nothing more than it did.
		 */
		if (old->tgid != rec.tgid && old->sk != rec.sk &&
		    BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport))
			note_shared(sk, &key, old, &rec);
		__builtin_memcpy(old, &rec, sizeof(rec));
	}
	else
		bpf_map_update_elem(map, &key, &rec, seeding ? BPF_NOEXIST : BPF_ANY);
}

/* A listen() that just succeeded: the newest TCP listener owns the entry
 * (bindwatch's own checks, which let go at once, are no holder). direct:
 * sk is typed, for BW_READ. */
static __always_inline void record_listener(struct sock *sk, bool direct)
{
	if (record_holders && holder_proto(sk, direct) == IPPROTO_TCP && !is_probe(sk, direct))
		record_holder_of(current_task_of(direct), sk, IPPROTO_TCP, false, direct);
}

/* A bind() that just succeeded: a UDP socket holds its port from now on. */
static __always_inline void record_bound(struct sock *sk, bool direct)
{
	if (record_holders && holder_proto(sk, direct) == IPPROTO_UDP)
		record_holder_of(current_task_of(direct), sk, IPPROTO_UDP, false, direct);
}
