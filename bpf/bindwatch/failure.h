// SPDX-License-Identifier: GPL-2.0
/*
 * A failure's event: the two steps every backend's failure goes through
 * (fold_or_report, emit_failure), the process and socket it carries, and
 * implicit binds (connect(), sendto(), sendmsg() on an unbound socket).
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/* Keep these types in BTF (no map names them) so bpf2go generates Go for them. */
const struct event *unused_event __attribute__((unused));
const enum bw_hook *unused_hook __attribute__((unused));
const enum bw_syscall *unused_syscall __attribute__((unused));
const enum bw_sock_flag *unused_sock_flag __attribute__((unused));
const enum bw_errno_bit *unused_errno_bit __attribute__((unused));
const enum bw_args_len *unused_args_len __attribute__((unused));
const enum bw_mark *unused_mark __attribute__((unused));

/*
 * The failing process's argv, captured now because it may exit (or exec)
 * before user space reads /proc. The kernel keeps argv, as execve() laid
 * it out, in the process's own memory between mm->arg_start and
 * mm->arg_end (what /proc/PID/cmdline reads; a process may rewrite it, as
 * setproctitle() does). A kernel thread has no mm: both read as 0. The
 * buffer is bounded: an argv that does not fit keeps its first
 * BW_ARGS_HEAD and last BW_ARGS_TAIL bytes, and args_total says how long
 * it really is. The reads cannot sleep, so a page of argv swapped out
 * leaves that part empty (args_len or args_tail_len 0). Called only for a
 * failure being reported, never on a successful bind().
 */
static __always_inline void fill_args(struct event *e, struct task_struct *task)
{
	unsigned long arg_start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(task, mm, arg_end);
	unsigned long total;
	__u32 len;

	if (arg_end <= arg_start)
		return;
	total = arg_end - arg_start;
	e->args_total = total > 0xffffffff ? 0xffffffff : total;
	if (total <= BW_ARGS_LEN) {
		len = total;
		if (bpf_probe_read_user(e->args, len, (void *)arg_start) == 0)
			e->args_len = len;
		return;
	}
	if (bpf_probe_read_user(e->args, BW_ARGS_HEAD, (void *)arg_start) == 0)
		e->args_len = BW_ARGS_HEAD;
	if (bpf_probe_read_user(e->args + BW_ARGS_HEAD, BW_ARGS_TAIL, (void *)(arg_end - BW_ARGS_TAIL)) == 0)
		e->args_tail_len = BW_ARGS_TAIL;
}

static __always_inline void fill_process(struct event *e)
{
	struct task_struct *task = current_task();
	__u64 uid_gid = bpf_get_current_uid_gid();
	const struct cred *cred;

	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	/* The process's start is its leader's; each thread has its own. */
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e->cgroup_id = bpf_get_current_cgroup_id();
	/* kernel_cap_t is u32[2] before 6.3 and one u64 after: on little
	 * endian both are the same 8 bytes. */
	cred = BPF_CORE_READ(task, cred);
	bpf_core_read(&e->cap_effective, sizeof(e->cap_effective), &cred->cap_effective);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	fill_args(e, task);
}

static __always_inline void fill_socket(struct event *e, struct sock *sk)
{
	__u8 flags = 0;

	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sock_type = BPF_CORE_READ(sk, sk_type);
	e->protocol = BPF_CORE_READ(sk, sk_protocol);
	e->bound_dev_if = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	e->netns = sock_netns(sk, false);
	e->netns_cookie = sock_netns_cookie(sk);
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse))
		flags |= BW_SOCK_REUSEADDR;
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport))
		flags |= BW_SOCK_REUSEPORT;
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_ipv6only))
		flags |= BW_SOCK_V6ONLY;
	if (sock_freebind(sk))
		flags |= BW_SOCK_FREEBIND;
	e->sock_flags = flags;
}

/*
 * Every backend's failure goes through these two steps. fold_or_report()
 * is the hot path of a storm: filters, then the fold decision, touching
 * nothing but the request. Only a failure to be reported pays for
 * emit_failure()'s capture of the socket and the process (and for reading
 * the boot clock: now is the fold clock's, see folds.h).
 */
static __always_inline bool fold_or_report(struct fold_key *key, __u32 err, __u8 syscall, __u16 port, __u32 sock_hint, __u64 now)
{
	key->tgid = bpf_get_current_pid_tgid() >> 32;
	key->err = err;
	key->port = port;
	key->syscall = syscall;
	key->sock_hint = sock_hint;

	if (paused || !port_wanted(port) || !comm_wanted() || !netns_wanted())
		return false;
	if (fold(key, now)) {
		count_stat(STAT_FAILURES);
		return false;
	}
	return true;
}

static __always_inline int emit_failure(struct sock *sk, struct bind_req *req, struct bind_req *dst, __u8 syscall,
					__u8 hook, __u32 err, struct fold_key *key, __u64 now)
{
	struct event *e;

	if (paused || is_probe(sk, false))
		return 0;
	count_stat(STAT_FAILURES);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (!fold_undelivered(key, now, BPF_CORE_READ(sk, sk_protocol)))
			count_stat(STAT_LOST);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->err = err;
	e->syscall = syscall;
	e->hook = hook;
	e->port = req->port;
	__builtin_memcpy(e->addr, req->addr, sizeof(e->addr));
	if (dst) {
		__builtin_memcpy(e->daddr, dst->addr, sizeof(e->daddr));
		e->dport = dst->port;
		e->dfamily = dst->family;
	} else {
		e->dport = 0;
		e->dfamily = 0;
	}
	e->has_holder = 0;
	e->args_len = 0;
	e->args_tail_len = 0;
	e->args_total = 0;
	fill_socket(e, sk);
	fill_process(e);
	attach_holder(e, sk);
	/* Later failures of this key fold into this entry (see fold()). */
	if (fold_ns)
		fold_start(fold_map_of(fold_gen), key, now, e->ts_ns, e->protocol, 0);
	/* Default flags: the kernel wakes the reader only when it has caught
	 * up, so a storm costs one wakeup per drained batch, not per event. */
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline bool is_inet(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	return family == AF_INET || family == AF_INET6;
}

/* A failure whose socket is at hand (listen(), kernel function hooks).
 * req is NULL for listen(): its address is the socket's (still bound). */
static __always_inline int report_sock_failure(struct sock *sk, struct bind_req *req, __u8 syscall, __u8 hook, __u32 err)
{
	struct bind_req local = {};
	struct fold_key key = {};
	__u64 now = fold_clock();
	__u32 protocol;

	if (!is_inet(sk))
		return 0;
	if (!req) {
		sock_local_addr(sk, BPF_CORE_READ(sk, __sk_common.skc_family), local.addr, &local.port, false);
		req = &local;
	}
	protocol = BPF_CORE_READ(sk, sk_protocol);
	if (!fold_or_report(&key, err, syscall, req->port, protocol, now))
		return 0;
	return emit_failure(sk, req, NULL, syscall, hook, err, &key, now);
}

/*
 * Implicit binds: connect(), sendto() and sendmsg() on a socket with no
 * local port make the kernel pick one (TCP: inet_hash_connect; UDP:
 * inet_autobind). When none is left they fail with EADDRNOTAVAIL (TCP) or
 * EAGAIN (UDP). Only such a failure is reported: errno first (every other
 * return costs one comparison), then a socket of TCP, MPTCP or UDP that
 * still has no local port — a bound socket's EADDRNOTAVAIL is a 4-tuple
 * taken, and a bound socket's EAGAIN a full send buffer. Its local address
 * (0.0.0.0:0, or the address bound with IP_BIND_ADDRESS_NO_PORT) is the
 * failure's; dst is where the call was going. Folded per process, fd (or
 * protocol) and syscall; --port filters on the local port, 0.
 */
static __always_inline bool implicit_errno(long ret)
{
	return (ret == -EADDRNOTAVAIL || ret == -EAGAIN) && errno_wanted(-ret);
}

static __always_inline int report_implicit(struct sock *sk, struct bind_req *dst, __u8 syscall, __u8 hook, __u32 err,
					   __u32 sock_hint)
{
	struct bind_req local = {};
	struct fold_key key = {};
	__u16 protocol, family;
	__u64 now;

	if (!sk || !is_inet(sk) || BPF_CORE_READ(sk, __sk_common.skc_num))
		return 0;
	protocol = BPF_CORE_READ(sk, sk_protocol);
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP && protocol != IPPROTO_MPTCP)
		return 0;
	/* TCP says EADDRNOTAVAIL, UDP's autobind EAGAIN: nothing else. */
	if ((err == EAGAIN) != (protocol == IPPROTO_UDP))
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	sock_local_addr(sk, family, local.addr, &local.port, false);
	local.family = family;
	now = fold_clock();
	if (!fold_or_report(&key, err, syscall, 0, sock_hint, now))
		return 0;
	return emit_failure(sk, &local, dst, syscall, hook, err, &key, now);
}
