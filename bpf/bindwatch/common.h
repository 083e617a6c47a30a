// SPDX-License-Identifier: GPL-2.0
/*
 * Shared by every section: the configuration Go writes into .rodata, the
 * failure ring and session counters, the current task, bindwatch's own
 * probe sockets, and reading a socket (its namespace, inode, bound address)
 * or a bind() request's address.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/*
 * Configuration, written by Go into .rodata before load. Being constants
 * to the verifier, disabled filters are pruned away entirely.
 */
volatile const __u32 errno_mask = BW_ERR_EADDRINUSE | BW_ERR_EADDRNOTAVAIL | BW_ERR_EACCES | BW_ERR_EINVAL | BW_ERR_EAGAIN;
volatile const __u8 filter_pids;     /* only tgids in traced_pids */
volatile const __u8 follow_children; /* children of traced tgids are traced */
volatile const __u8 filter_comm_len; /* 0: no comm filter */
volatile const char filter_comm[BW_COMM_LEN];
volatile const __u32 filter_netns;  /* 0: every network namespace */
volatile const __u32 n_port_ranges; /* 0: all ports */
volatile const struct port_range port_ranges[BW_MAX_PORT_RANGES];
volatile const __u64 fold_ns;        /* 0: report every failure */
volatile const __u8 record_holders;  /* keep the holder registry */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* Go resizes it (--ring-size) */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} session_stats SEC(".maps");

/*
 * Before 6.6 the inet bool options were bitfields of struct inet_sock; 6.6
 * folded them into the inet_flags word. CO-RE picks whichever exists.
 */
struct inet_sock___old {
	__u8 freebind : 1;
	__u8 transparent : 1;
} __attribute__((preserve_access_index));

enum stat_field { STAT_FAILURES, STAT_LOST, STAT_FOLD_FULL, STAT_UNFOLLOWED, STAT_INCIDENT_LOST };

static __always_inline void count_stat(enum stat_field field)
{
	__u32 zero = 0;
	struct stats *s = bpf_map_lookup_elem(&session_stats, &zero);

	if (!s)
		return;
	/* Per-CPU, but a preempted program can share the slot: stay atomic. */
	switch (field) {
	case STAT_FAILURES:
		__sync_fetch_and_add(&s->failures, 1);
		break;
	case STAT_LOST:
		__sync_fetch_and_add(&s->lost, 1);
		break;
	case STAT_FOLD_FULL:
		__sync_fetch_and_add(&s->fold_full, 1);
		break;
	case STAT_UNFOLLOWED:
		__sync_fetch_and_add(&s->unfollowed, 1);
		break;
	case STAT_INCIDENT_LOST:
		__sync_fetch_and_add(&s->incident_lost, 1);
		break;
	}
}

/*
 * Direct reads. BPF_CORE_READ is a bpf_probe_read_kernel() call for each
 * pointer it follows, ~15-25 ns apiece on 6.18: a successful UDP bind()'s
 * dozen of them were most of what tracing it cost. Through a typed pointer
 * (the task from bpf_get_current_task_btf(), a socket cast with the
 * bpf_rdonly_cast kfunc) the same read is one load, which the JIT guards
 * with an exception-table entry: a bad address reads 0, as a failed probe
 * read leaves 0. Go sets direct_reads where the kernel has both (6.2+);
 * the hot paths (a bind() or listen() returning) take a `direct` argument,
 * direct_reads or false, and read through BW_READ. With direct_reads 0
 * the verifier prunes the typed branch, kfunc call included (weak: the
 * loader poisons it where the kernel lacks it). A pointer read that way
 * must have come typed: current_task_of() and sock_from_fd() give it so.
 */
volatile const __u8 direct_reads;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#define BW_READ(direct, p, f) ((direct) ? (p)->f : BPF_CORE_READ(p, f))
#define BW_READ2(direct, p, a, b) ((direct) ? (p)->a->b : BPF_CORE_READ(p, a, b))

/*
 * The current task, for CO-RE reads. bpf_get_current_task_btf() only
 * arrived in 5.11; every read here goes through BPF_CORE_READ (probe
 * reads), which works on the untyped pointer of any kernel.
 */
static __always_inline struct task_struct *current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

/* The current task, typed for BW_READ when direct. */
static __always_inline struct task_struct *current_task_of(bool direct)
{
	if (direct)
		return bpf_get_current_task_btf();
	return current_task();
}

/* The struct sock behind a file descriptor of the current task (typed
 * for BW_READ when direct). */
static __always_inline struct sock *sock_from_fd(int fd, bool direct)
{
	struct task_struct *task = current_task_of(direct);
	struct fdtable *fdt = BW_READ2(direct, task, files, fdt);
	struct file **fds;
	struct file *file;
	struct socket *sock;

	if (fd < 0 || fd >= BW_READ(direct, fdt, max_fds))
		return NULL;
	fds = BW_READ(direct, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/* bind()/listen() only reach inet code for sockets: private_data is one. */
	if (direct) {
		file = bpf_rdonly_cast(file, bpf_core_type_id_kernel(struct file));
		sock = bpf_rdonly_cast(file->private_data, bpf_core_type_id_kernel(struct socket));
		return sock->sk;
	}
	sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

static __always_inline __u32 sock_netns(struct sock *sk, bool direct)
{
	if (direct)
		return sk->__sk_common.skc_net.net->ns.inum;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * The socket's network namespace's cookie: the kernel reuses a freed
 * namespace's inode, never its cookie, so the two name one namespace for
 * good. struct net's u64 net_cookie is set when the namespace is made
 * (5.12+); before, it was an atomic64 set on first ask, and 0 here (the
 * inode alone then, as user space says in the start record's limits).
 */
struct net___cookie {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

static __always_inline __u64 net_cookie(struct net *n)
{
	struct net___cookie *net = (void *)n;

	if (!bpf_core_field_exists(net->net_cookie))
		return 0;
	return BPF_CORE_READ(net, net_cookie);
}

static __always_inline __u64 sock_netns_cookie(struct sock *sk)
{
	return net_cookie(BPF_CORE_READ(sk, __sk_common.skc_net.net));
}

/* The socket's inode number, as /proc/PID/fd and sock_diag show it. */
static __always_inline __u64 sock_inode(struct sock *sk)
{
	/* struct socket is the first member of socket_alloc (SOCK_INODE relies on it). */
	struct socket_alloc *sa = (struct socket_alloc *)BPF_CORE_READ(sk, sk_socket);

	return sa ? BPF_CORE_READ(sa, vfs_inode.i_ino) : 0;
}

static __always_inline bool sock_freebind(struct sock *sk)
{
	struct inet_sock *inet = (struct inet_sock *)sk;

	if (bpf_core_field_exists(inet->inet_flags)) {
		unsigned long flags = BPF_CORE_READ(inet, inet_flags);
		/* The flag enum is anonymous, so CO-RE cannot relocate it; its
		 * values are stable since 6.6 (new bits are appended). */
		return flags & ((1UL << INET_FLAGS_FREEBIND) | (1UL << INET_FLAGS_TRANSPARENT));
	}
	struct inet_sock___old *old = (void *)sk;
	return BPF_CORE_READ_BITFIELD_PROBED(old, freebind) ||
	       BPF_CORE_READ_BITFIELD_PROBED(old, transparent);
}

/* The address a socket is bound to (listen(): bind succeeded earlier). */
static __always_inline void sock_local_addr(struct sock *sk, __u16 family, __u8 addr[16], __u16 *port, bool direct)
{
	*port = BW_READ(direct, sk, __sk_common.skc_num);
	if (direct && family == AF_INET6)
		__builtin_memcpy(addr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
	else if (direct)
		*(__u32 *)addr = sk->__sk_common.skc_rcv_saddr;
	else if (family == AF_INET6)
		BPF_CORE_READ_INTO(addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	else
		BPF_CORE_READ_INTO((__u32 *)addr, sk, __sk_common.skc_rcv_saddr);
}

/*
 * A bind() request's address. After a failed bind the kernel has reset the
 * socket's address, so the request must come from the sockaddr argument.
 */
struct bind_req {
	__u16 port;
	__u16 family; /* AF_INET (AF_UNSPEC read as it) or AF_INET6 */
	__u8 addr[16];
};

static __always_inline int read_sockaddr(struct bind_req *req, const void *uaddr, int addrlen, bool user)
{
	struct sockaddr_in6 sa = {};
	__u32 len = addrlen;

	if (len > sizeof(sa))
		len = sizeof(sa);
	if (len < sizeof(struct sockaddr_in))
		return -1;
	if (user ? bpf_probe_read_user(&sa, len, uaddr) : bpf_probe_read_kernel(&sa, len, uaddr))
		return -1;
	/* AF_UNSPEC: inet_bind treats it as AF_INET (INADDR_ANY only). */
	if (sa.sin6_family != AF_INET && sa.sin6_family != AF_INET6 && sa.sin6_family != 0)
		return -1;
	req->port = bpf_ntohs(sa.sin6_port);
	if (sa.sin6_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		__builtin_memcpy(req->addr, &sa.sin6_addr, 16);
		req->family = AF_INET6;
	} else {
		/* AF_INET, or AF_UNSPEC treated as AF_INET by inet_bind. */
		__builtin_memcpy(req->addr, &((struct sockaddr_in *)&sa)->sin_addr, 4);
		req->family = AF_INET;
	}
	return 0;
}

/* MPTCP listeners take their port from TCP's table: one port space. */
static __always_inline __u8 port_space(__u16 protocol)
{
	return protocol == IPPROTO_MPTCP ? IPPROTO_TCP : protocol;
}

/*
 * bindwatch's own test binds (wait-free, free) mark their sockets with
 * SO_MARK, and their failures are not failures to report. The kernel lets
 * a task set SO_MARK only with CAP_NET_ADMIN or CAP_NET_RAW over the user
 * namespace owning the socket's network namespace (sk_setsockopt), so the
 * mark is honoured only in network namespaces owned by the initial user
 * namespace (level 0): there only root could have set it. A user in a
 * user namespace of their own can set marks in its network namespaces —
 * their failures there are reported whatever the mark.
 */
static __always_inline bool is_probe(struct sock *sk, bool direct)
{
	if (BW_READ(direct, sk, sk_mark) != BW_PROBE_MARK)
		return false;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, user_ns, level) == 0;
}
