// SPDX-License-Identifier: GPL-2.0
/*
 * Incidents: what the kernel sees on a port with an open incident (taken,
 * released, silent sharing, stop signals), in its own ring.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/* ---- incidents: released, signal, recovered -------------------------------
 *
 * An incident is open on a port from its first reported failure until
 * someone takes the port again. User space keeps these maps: the ports
 * with an open incident, and the processes that hold them. The hooks below
 * fire for every TCP state change, every signal and every successful
 * bind()/listen() of the host, so each returns at its first comparison for
 * everything else, and nothing is recorded for ports without an incident.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BW_MAX_INCIDENTS);
	__type(key, struct holder_key);
	__type(value, __u64); /* the failure's netns cookie (0: not known) */
} incident_ports SEC(".maps");

/*
 * Whether key's port has an open incident in sk's network namespace: the
 * same inode and, where the kernel has cookies, the same cookie — a new
 * namespace that got a dead one's inode never recovers its incident.
 */
static __always_inline bool incident_port_of(struct holder_key *key, struct sock *sk)
{
	__u64 *cookie = bpf_map_lookup_elem(&incident_ports, key);

	if (!cookie)
		return false;
	return !*cookie || *cookie == sock_netns_cookie(sk);
}

/* Holders of ports with an open incident: their pid -> the port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BW_MAX_INCIDENT_HOLDERS);
	__type(key, __u32);
	__type(value, struct holder_key);
} incident_holders SEC(".maps");

/*
 * How many ports have an open incident (user space writes it): lets a
 * successful bind() skip the hash lookup while there is none. An array
 * lookup the verifier inlines.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} incident_count SEC(".maps");

/* Incident records have their own ring: a failure storm cannot crowd them out. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} incident_events SEC(".maps");

const struct incident_event *unused_incident_event __attribute__((unused));
const enum bw_incident_kind *unused_incident_kind __attribute__((unused));

static __always_inline bool incidents_open(void)
{
	__u32 zero = 0, *n = bpf_map_lookup_elem(&incident_count, &zero);

	return n && *n;
}

/* Reserve an incident record and fill in the current task as its actor. */
static __always_inline struct incident_event *incident_reserve(__u32 kind)
{
	struct task_struct *task = current_task();
	struct incident_event *e = bpf_ringbuf_reserve(&incident_events, sizeof(*e), 0);
	unsigned long arg_start, arg_end;
	__u32 len;

	if (!e) {
		count_stat(STAT_INCIDENT_LOST); /* said in stop's incident_records_lost */
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e) - sizeof(e->args));
	e->kind = kind;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* An exiting task may have no mm left: then no argv. */
	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	/* Bounded so that older verifiers (5.10, 6.1) see it even when the
	 * compiler spills len: a constant size, or a masked one. */
	len = arg_end - arg_start;
	if (!arg_start)
		return e;
	if (len >= BW_ARGS_LEN) {
		if (bpf_probe_read_user(e->args, BW_ARGS_LEN, (void *)arg_start) == 0)
			e->args_len = BW_ARGS_LEN;
		return e;
	}
	len &= BW_ARGS_LEN - 1;
	if (bpf_probe_read_user(e->args, len, (void *)arg_start) == 0)
		e->args_len = len;
	return e;
}

/*
 * A bind() (UDP) or listen() (TCP) that just succeeded: if its port has an
 * open incident, this is the recovery.
 */
static __always_inline void note_taken(struct sock *sk, __u8 proto, __u8 syscall)
{
	struct holder_key key = { .proto = proto };
	struct incident_event *e;
	__u16 family;

	if (!incidents_open() || holder_proto(sk, false) != proto)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	key.netns = sock_netns(sk, false);
	key.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!incident_port_of(&key, sk))
		return;
	e = incident_reserve(BW_INCIDENT_RECOVERED);
	if (!e)
		return;
	/* bindwatch's own checks (wait-free, free) take the port and let go
	 * at once: never the recovery, a note that the port was free. */
	e->probe = is_probe(sk, false);
	e->netns = key.netns;
	e->proto = proto;
	e->syscall = syscall;
	e->family = family;
	sock_local_addr(sk, family, e->addr, &e->port, false);
	bpf_ringbuf_submit(e, 0);
}

/*
 * Silent sharing: one port_shared record per (port, pair of processes)
 * per BW_SHARED_INTERVAL_NS, and at most BW_SHARED_PORT_BURST per port;
 * the joins in between are counted in the pair's entry and carried by its
 * next record. LRU: a user who makes pairs by
 * the thousand evicts entries, and then gets more records, which the
 * incident ring bounds (a full ring drops them).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_SHARED_PAIRS);
	__type(key, struct shared_key);
	__type(value, struct shared_val);
} shared_pairs SEC(".maps");

/* Each port's budget of port_shared records (BW_SHARED_PORT_BURST). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_SHARED_PAIRS);
	__type(key, struct holder_key);
	__type(value, struct shared_budget);
} shared_ports SEC(".maps");

/*
 * sk (SO_REUSEPORT) was just bound (UDP) or put to listen (TCP) on the port
 * the registry says old holds, for another process: if old is still bound
 * there on the same address, the two share the port's connections.
 */
static __always_inline void note_shared(struct sock *sk, struct holder_key *key, struct holder_rec *old, struct holder_rec *rec)
{
	struct shared_key sk_key = {};
	struct shared_val *v, nv = {};
	struct shared_budget *b, nb = {};
	struct incident_event *e;
	struct sock *held = (struct sock *)old->sk;
	__u64 now, inode;
	__u32 repeats = 0;

	/* The tracing filters: --port, --netns (the joiner's), and --pid
	 * (bindwatch run: its tree on either side). */
	if (is_probe(sk, false) || !port_wanted(key->port) || !netns_wanted() ||
	    (!pid_wanted(rec->tgid) && !pid_wanted(old->tgid)))
		return;
	/* Still bound: as in attach_holder(). Same address: a group. */
	if (BPF_CORE_READ(held, __sk_common.skc_num) != key->port)
		return;
	inode = sock_inode(held);
	if (!inode || (old->inode && inode != old->inode))
		return;
	if (old->family != rec->family || __builtin_memcmp(old->addr, rec->addr, sizeof(rec->addr)))
		return;
	sk_key.port = *key;
	sk_key.holder = old->tgid;
	sk_key.joiner = rec->tgid;
	now = bpf_ktime_get_boot_ns();
	v = bpf_map_lookup_elem(&shared_pairs, &sk_key);
	if (v && now - v->last_ns < BW_SHARED_INTERVAL_NS) {
		__sync_fetch_and_add(&v->repeats, 1);
		return;
	}
	/* The port's budget: past it, the join waits in its pair's count
	 * (last_ns kept, so the pair's next join past the window is written). */
	b = bpf_map_lookup_elem(&shared_ports, key);
	if (b && now - b->start_ns < BW_SHARED_INTERVAL_NS) {
		if (b->count >= BW_SHARED_PORT_BURST) {
			if (v) {
				__sync_fetch_and_add(&v->repeats, 1);
			} else {
				nv.repeats = 1;
				bpf_map_update_elem(&shared_pairs, &sk_key, &nv, BPF_ANY);
			}
			return;
		}
		__sync_fetch_and_add(&b->count, 1);
	} else {
		nb.start_ns = now;
		nb.count = 1;
		bpf_map_update_elem(&shared_ports, key, &nb, BPF_ANY);
	}
	if (v) {
		repeats = v->repeats;
		v->repeats = 0;
		v->last_ns = now;
	} else {
		nv.last_ns = now;
		bpf_map_update_elem(&shared_pairs, &sk_key, &nv, BPF_ANY);
	}
	e = incident_reserve(BW_INCIDENT_SHARED);
	if (!e)
		return;
	e->netns = key->netns;
	e->proto = key->proto;
	e->syscall = key->proto == IPPROTO_UDP ? BW_SYSCALL_BIND : BW_SYSCALL_LISTEN;
	e->family = rec->family;
	e->port = rec->port;
	__builtin_memcpy(e->addr, rec->addr, sizeof(e->addr));
	e->repeats = repeats;
	__builtin_memcpy(&e->holder, old, sizeof(*old));
	e->holder.inode = inode;
	e->holder.bound_ns = holder_bound_ns(old->bound_ns, e->ts_ns);
	e->has_holder = 1;
	bpf_ringbuf_submit(e, 0);
}

/* ---- incidents: the kernel's view of a port with an open incident -------- */

/*
 * A released record: sk, on key's port, stopped holding it, in the current
 * task's context; rec is the registry's record of who took the port with
 * it, if it has one.
 */
static __always_inline int emit_released(struct holder_key *key, struct sock *sk, struct holder_rec *rec, __u32 queued, __u8 migrate)
{
	struct task_struct *task = current_task();
	struct incident_event *e = incident_reserve(BW_INCIDENT_RELEASED);
	__u16 family;

	if (!e)
		return 0;
	e->netns = key->netns;
	e->proto = key->proto;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	sock_local_addr(sk, family, e->addr, &e->port, false);
	e->port = key->port;
	e->queued = queued;
	e->may_migrate = migrate;
	if (rec) {
		__builtin_memcpy(&e->holder, rec, sizeof(*rec));
		e->holder.bound_ns = holder_bound_ns(rec->bound_ns, e->ts_ns);
		e->has_holder = 1;
	}
	/* do_exit() sets PF_EXITING and exit_code before it closes the files. */
	if (BPF_CORE_READ(task, flags) & PF_EXITING) {
		e->exiting = 1;
		e->exit_code = BPF_CORE_READ(task, exit_code);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * Whether inet_csk_listen_stop() may migrate the closing listener's queue
 * to another listener of its SO_REUSEPORT group (5.14+) instead of
 * resetting it. The state changes after the socket is unhashed, and the
 * unhash (reuseport_stop_listen_sock) decided: where migration is on —
 * net.ipv4.tcp_migrate_req in the socket's namespace, or the group's
 * program attached as SK_REUSEPORT_SELECT_OR_MIGRATE — the socket stays
 * in its group among the closed ones; otherwise it left the group
 * (sk_reuseport_cb NULL, as on every kernel before 5.14). It migrates
 * when the group still has a listener (num_socks no longer counts it);
 * read before that, num_socks counts it, and the answer errs on "may".
 */
static __always_inline __u8 may_migrate(struct sock *sk)
{
	struct sock_reuseport *reuse = BPF_CORE_READ(sk, sk_reuseport_cb);

	return reuse && BPF_CORE_READ(reuse, num_socks) > 0;
}

/*
 * sock:inet_sock_set_state fires on every TCP state change, in the context
 * of the task that caused it. A listener that closes goes LISTEN -> CLOSE
 * (tcp_close / inet_csk_listen_stop): from close() in the program, from
 * the file's last fput in an exiting task. A listen() that fails passes
 * LISTEN -> CLOSE too (inet_csk_listen_start marks the socket LISTEN
 * before it takes the port), so only the registry's socket counts as the
 * holder letting go.
 *
 * Attached as a BTF-typed raw tracepoint (tp_btf, 5.5+; no tracefs,
 * allowed under lockdown, like follow_fork): the program gets the
 * tracepoint's arguments as they are, without the kernel first assembling
 * the event record the classic tracepoint would — which every connection's
 * every state change would pay.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(incident_sock_state, const struct sock *csk, const int oldstate, const int newstate)
{
	struct holder_key key = { .proto = IPPROTO_TCP };
	struct sock *sk = (struct sock *)csk;
	struct holder_rec *rec;

	if (oldstate != TCP_LISTEN)
		return 0;
	if (newstate != TCP_CLOSE || !incidents_open())
		return 0;
	key.netns = sock_netns(sk, false);
	/* inet_sport, not skc_num: a port released at close is already zeroed
	 * there (__inet_put_port) when the state changes. */
	key.port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (!incident_port_of(&key, sk))
		return 0;
	rec = bpf_map_lookup_elem(&tcp_holders, &key);
	if (!rec || rec->sk != (__u64)sk)
		return 0;
	/* tcp_close() sets CLOSE before inet_csk_listen_stop() resets each
	 * connection still in the accept queue: the backlog is what the
	 * kernel accepted for the program and the program never served. */
	return emit_released(&key, sk, rec, BPF_CORE_READ(sk, sk_ack_backlog), may_migrate(sk));
}

/*
 * fentry/kprobe backends: udp_lib_unhash is every UDP socket's unhash op
 * (IPv4, IPv6, UDP-Lite), called when it closes (sk_common_release) in the
 * closing task's context, before its port is forgotten. The tracepoint
 * backend has no hook here: a poll sees UDP holders go.
 */
static __always_inline int udp_unhashed(struct sock *sk)
{
	struct holder_key key = { .proto = IPPROTO_UDP };
	struct holder_rec *rec;

	if (!incidents_open())
		return 0;
	key.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!key.port) /* never bound: a failed bind()'s socket */
		return 0;
	key.netns = sock_netns(sk, false);
	if (!incident_port_of(&key, sk))
		return 0;
	rec = bpf_map_lookup_elem(&udp_holders, &key);
	if (rec && rec->sk != (__u64)sk)
		rec = NULL; /* another socket on the port: no record of who bound it */
	return emit_released(&key, sk, rec, 0, 0);
}

SEC("fentry/udp_lib_unhash")
int BPF_PROG(fentry_udp_lib_unhash, struct sock *sk)
{
	return udp_unhashed(sk);
}

SEC("kprobe/udp_lib_unhash")
int BPF_KPROBE(kprobe_udp_lib_unhash, struct sock *sk)
{
	return udp_unhashed(sk);
}

/* The stop signals a postmortem asks about: HUP, INT, QUIT, KILL, USR2, TERM. */
#define BW_STOP_SIGNALS ((1ULL << 1) | (1ULL << 2) | (1ULL << 3) | (1ULL << 9) | (1ULL << 12) | (1ULL << 15))

/*
 * signal:signal_generate fires for every signal sent, in the sender's
 * context. Only a stop signal to a process that holds a port with an open
 * incident is recorded. A tp_btf program, as above: no event record is
 * assembled for the signals of the rest of the host, and the target's
 * tgid is a direct load through the typed pointer — a probe-read helper
 * call there cost each stop signal about as much as the hash lookup after
 * it (BenchmarkSignalStorm).
 */
SEC("tp_btf/signal_generate")
int BPF_PROG(incident_signal, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	struct incident_event *e;
	struct holder_key *key;
	__u32 target;

	if (!((BW_STOP_SIGNALS >> (sig & 63)) & 1))
		return 0;
	if (!incidents_open())
		return 0;
	target = task->tgid;
	key = bpf_map_lookup_elem(&incident_holders, &target);
	if (!key)
		return 0;
	e = incident_reserve(BW_INCIDENT_SIGNAL);
	if (!e)
		return 0;
	e->netns = key->netns;
	e->proto = key->proto;
	e->port = key->port;
	e->sig = sig;
	e->result = result;
	e->target = target;
	BPF_CORE_READ_STR_INTO(&e->target_comm, task, group_leader, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
