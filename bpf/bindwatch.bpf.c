// SPDX-License-Identifier: GPL-2.0
/*
 * bindwatch: report every failed bind()/listen() with what the kernel knew at
 * that moment, through one ring buffer.
 *
 * One object holds every backend's programs (tracepoint, kprobe, fentry);
 * the Go loader deletes the programs the chosen backend does not use before
 * loading. All backends funnel into fold_or_report() and emit_failure(), so
 * the same failure yields the same event whichever hook saw it.
 */
#include "vmlinux.h"
#include "arch.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "uapi.h"
#include "bindwatch.h"

/* Probe-read helpers and tracing programs need a GPL-compatible licence. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

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
 * The fold table: per (process, errno, port, syscall, socket), how many
 * failures were counted instead of reported. Two generations of it,
 * folds0 and folds1: the programs write the one fold_gen names, and Go
 * flips fold_gen every tick, then — a tick later, once no program that
 * read the old fold_gen can still be running (programs run for
 * microseconds, under RCU: for a shorter rest Go waits for a grace period
 * with membarrier) — reads and empties the other one with batch
 * lookup-and-delete. So user space never reads a map the kernel is
 * writing: iterating a hash map while programs insert and delete can
 * abort, and deleting an entry a program is incrementing loses the
 * increment. Every folded failure is harvested exactly once.
 *
 * A plain hash, not LRU: an LRU map evicts entries, and their counts with
 * them, behind user space's back. A full table makes nothing fail: a
 * failure that finds no room for its key is reported on its own — or, the
 * ring buffer full too, counted as lost — and counted in stats.fold_full.
 * A failure that finds the ring buffer full is folded (fold_undelivered):
 * the entry names who failed, so its repeats record reports it.
 *
 * Size, from a measurement on 6.18 (TestHarvestFullFoldTable,
 * BenchmarkHarvestFolds; a 5 s storm as uid 65534 over 40,000 keys):
 * preallocated, an entry costs 120 bytes of kernel memory, 1.9 MiB per
 * generation of 16,384; harvesting a full generation takes ~11 ms, once a
 * tick. The storm fills a generation within its first tick whatever the
 * size — 1.36 M failures: 587 k folded, 769 k lost, all counted — so a
 * bigger table only buys memory; a host's own services fold a few keys a
 * second.
 */
#define BW_FOLD_ENTRIES 16384

struct fold_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BW_FOLD_ENTRIES);
	__type(key, struct fold_key);
	__type(value, struct fold_val);
};

struct fold_map folds0 SEC(".maps");
struct fold_map folds1 SEC(".maps");

/* Which fold map the programs write: folds0 when even. Go flips it. */
volatile __u32 fold_gen;

/*
 * Set by Go when tracing stops: from then on no failure is counted, so the
 * counters hold still at once, while detaching the programs (which waits
 * for RCU grace periods: ~0.1-0.3 s) goes on beside the last reports.
 */
volatile __u8 paused;

static __always_inline void *fold_map_of(__u32 gen)
{
	return gen & 1 ? (void *)&folds1 : (void *)&folds0;
}

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

static __always_inline void *holder_map_of(__u8 proto)
{
	return proto == IPPROTO_UDP ? (void *)&udp_holders : (void *)&tcp_holders;
}

/* Processes to trace when filter_pids is set (--pid, bindwatch run). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} traced_pids SEC(".maps");

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

/* Keep these types in BTF (no map names them) so bpf2go generates Go for them. */
const struct event *unused_event __attribute__((unused));
const enum bw_hook *unused_hook __attribute__((unused));
const enum bw_syscall *unused_syscall __attribute__((unused));
const enum bw_sock_flag *unused_sock_flag __attribute__((unused));
const enum bw_errno_bit *unused_errno_bit __attribute__((unused));
const enum bw_args_len *unused_args_len __attribute__((unused));
const enum bw_mark *unused_mark __attribute__((unused));

/*
 * Before 6.6 the inet bool options were bitfields of struct inet_sock; 6.6
 * folded them into the inet_flags word. CO-RE picks whichever exists.
 */
struct inet_sock___old {
	__u8 freebind : 1;
	__u8 transparent : 1;
} __attribute__((preserve_access_index));

enum stat_field { STAT_FAILURES, STAT_LOST, STAT_FOLD_FULL, STAT_UNFOLLOWED };

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
	}
}

static __always_inline bool errno_wanted(__u32 err)
{
	switch (err) {
	case EADDRINUSE:
		return errno_mask & BW_ERR_EADDRINUSE;
	case EADDRNOTAVAIL:
		return errno_mask & BW_ERR_EADDRNOTAVAIL;
	case EACCES:
		return errno_mask & BW_ERR_EACCES;
	case EINVAL:
		return errno_mask & BW_ERR_EINVAL;
	case EAGAIN:
		return errno_mask & BW_ERR_EAGAIN;
	}
	return false;
}

static __always_inline bool pid_wanted(__u32 tgid)
{
	if (!filter_pids)
		return true;
	return bpf_map_lookup_elem(&traced_pids, &tgid) != NULL;
}

static __always_inline bool port_wanted(__u16 port)
{
	if (!n_port_ranges)
		return true;
	for (int i = 0; i < BW_MAX_PORT_RANGES; i++) {
		if (i >= n_port_ranges)
			break;
		if (port >= port_ranges[i].lo && port <= port_ranges[i].hi)
			return true;
	}
	return false;
}

static __always_inline bool comm_wanted(void)
{
	char comm[BW_COMM_LEN];

	if (!filter_comm_len)
		return true;
	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < BW_COMM_LEN; i++) {
		if (i >= filter_comm_len)
			return comm[i] == 0 || i == BW_COMM_LEN - 1;
		if (comm[i] != filter_comm[i])
			return false;
	}
	return true;
}

/*
 * The current task, for CO-RE reads. bpf_get_current_task_btf() only
 * arrived in 5.11; every read here goes through BPF_CORE_READ (probe
 * reads), which works on the untyped pointer of any kernel.
 */
static __always_inline struct task_struct *current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

/*
 * --netns: failures of tasks in one network namespace. The task's, not the
 * socket's: a socket is made in its creator's namespace, and the filter
 * runs before the socket is looked up (a socket passed in from another
 * namespace is reported by where its user is).
 */
static __always_inline bool netns_wanted(void)
{
	if (!filter_netns)
		return true;
	return BPF_CORE_READ(current_task(), nsproxy, net_ns, ns.inum) == filter_netns;
}

/* The struct sock behind a file descriptor of the current task. */
static __always_inline struct sock *sock_from_fd(int fd)
{
	struct task_struct *task = current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file;
	struct socket *sock;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/* bind()/listen() only reach inet code for sockets: private_data is one. */
	sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

static __always_inline __u32 sock_netns(struct sock *sk)
{
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
static __always_inline void sock_local_addr(struct sock *sk, __u16 family, __u8 addr[16], __u16 *port)
{
	*port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET6)
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

/*
 * Folding: count this failure into the fold table instead of reporting it?
 * Yes when its key reported a failure less than fold_ns ago. A key found
 * only in the previous generation carries its window over into the current
 * one, so a flip neither splits a storm nor reports it twice.
 */
static __always_inline bool fold(struct fold_key *key, __u64 now)
{
	__u32 gen = fold_gen;
	struct fold_val *v, *prev, carry;

	if (!fold_ns)
		return false;
	v = bpf_map_lookup_elem(fold_map_of(gen), key);
	if (v) {
		if (now - v->last_emit_ns < fold_ns) {
			__sync_fetch_and_add(&v->folded, 1);
			return true;
		}
		v->last_emit_ns = now; /* reported: a new window starts */
		return false;
	}
	prev = bpf_map_lookup_elem(fold_map_of(gen + 1), key);
	if (!prev || now - prev->last_emit_ns >= fold_ns)
		return false;
	carry = *prev;
	carry.folded = 1;
	/* Full (or just made by another CPU): this one is reported instead. */
	return bpf_map_update_elem(fold_map_of(gen), key, &carry, BPF_NOEXIST) == 0;
}

/*
 * Make key's entry in the current generation, with folded failures so far.
 * Returns 0, -EEXIST (another CPU made it, or its window just restarted:
 * see fold()) or -E2BIG (no room: counted in stats.fold_full).
 */
static __always_inline long fold_start(void *map, struct fold_key *key, __u64 now, __u16 protocol, __u64 folded)
{
	struct fold_val v = { .folded = folded, .last_emit_ns = now, .protocol = protocol };
	long err;

	bpf_get_current_comm(v.comm, sizeof(v.comm));
	err = bpf_map_update_elem(map, key, &v, BPF_NOEXIST);
	if (err == -E2BIG)
		count_stat(STAT_FOLD_FULL);
	return err;
}

/*
 * The ring buffer is full: fold the failure instead — the fold names who
 * failed, so its repeats record reports it. False when it cannot be
 * folded either (folding off, or the fold table full): it is lost.
 */
static __always_inline bool fold_undelivered(struct fold_key *key, __u64 now, __u16 protocol)
{
	void *map = fold_map_of(fold_gen);
	struct fold_val *v;
	long err;

	if (!fold_ns)
		return false;
	v = bpf_map_lookup_elem(map, key);
	if (!v) {
		err = fold_start(map, key, now, protocol, 1);
		if (err == 0)
			return true;
		if (err != -EEXIST || !(v = bpf_map_lookup_elem(map, key)))
			return false;
	}
	__sync_fetch_and_add(&v->folded, 1);
	return true;
}

/* MPTCP listeners take their port from TCP's table: one port space. */
static __always_inline __u8 port_space(__u16 protocol)
{
	return protocol == IPPROTO_MPTCP ? IPPROTO_TCP : protocol;
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
	e->has_holder = 1;
	copy_lineage(&e->holder_exit, rec->tgid, rec->start_ns);
	copy_lineage(&e->parent_exit, rec->ppid, 0);
}

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
	e->netns = sock_netns(sk);
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
 * emit_failure()'s capture of the socket and the process.
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
static __always_inline bool is_probe(struct sock *sk)
{
	if (BPF_CORE_READ(sk, sk_mark) != BW_PROBE_MARK)
		return false;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, user_ns, level) == 0;
}

static __always_inline int emit_failure(struct sock *sk, struct bind_req *req, struct bind_req *dst, __u8 syscall,
					__u8 hook, __u32 err, struct fold_key *key, __u64 now)
{
	struct event *e;

	if (paused || is_probe(sk))
		return 0;
	count_stat(STAT_FAILURES);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (!fold_undelivered(key, now, BPF_CORE_READ(sk, sk_protocol)))
			count_stat(STAT_LOST);
		return 0;
	}
	e->ts_ns = now;
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
		fold_start(fold_map_of(fold_gen), key, now, e->protocol, 0);
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
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 protocol;

	if (!is_inet(sk))
		return 0;
	if (!req) {
		sock_local_addr(sk, BPF_CORE_READ(sk, __sk_common.skc_family), local.addr, &local.port);
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
	sock_local_addr(sk, family, local.addr, &local.port);
	local.family = family;
	now = bpf_ktime_get_boot_ns();
	if (!fold_or_report(&key, err, syscall, 0, sock_hint, now))
		return 0;
	return emit_failure(sk, &local, dst, syscall, hook, err, &key, now);
}

/* The registry's protocol for sk: TCP (MPTCP shares its ports), UDP, or 0. */
static __always_inline __u8 holder_proto(struct sock *sk)
{
	__u16 protocol = BPF_CORE_READ(sk, sk_protocol);

	if (protocol == IPPROTO_UDP)
		return IPPROTO_UDP;
	return port_space(protocol) == IPPROTO_TCP ? IPPROTO_TCP : 0;
}

static __always_inline void note_shared(struct sock *sk, struct holder_key *key, struct holder_rec *old, struct holder_rec *rec);

/* Record task's holding socket sk (of protocol proto) for attach_holder(). */
static __always_inline void record_holder_of(struct task_struct *task, struct sock *sk, __u8 proto, bool seeding)
{
	struct holder_key key = {};
	struct holder_rec rec = {}, *old;
	void *map;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family != AF_INET && family != AF_INET6)
		return;
	rec.family = family;
	sock_local_addr(sk, family, rec.addr, &rec.port);
	key.netns = sock_netns(sk);
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
		rec.bound_ns = bpf_ktime_get_boot_ns(); /* seeded: 0, not known */
	}
	rec.sk = (__u64)sk;
	/*
	 * The inode sits on a cache line of its own that bind() does not touch:
	 * reading it costs a UDP bind() more than everything else here, so a
	 * live UDP bind leaves it to attach_holder(), at failure time.
	 */
	if (seeding || proto != IPPROTO_UDP)
		rec.inode = sock_inode(sk);
	rec.start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	rec.ppid = BPF_CORE_READ(task, real_parent, tgid);
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
 * (bindwatch's own checks, which let go at once, are no holder). */
static __always_inline void record_listener(struct sock *sk)
{
	if (record_holders && holder_proto(sk) == IPPROTO_TCP && !is_probe(sk))
		record_holder_of(current_task(), sk, IPPROTO_TCP, false);
}

/* A bind() that just succeeded: a UDP socket holds its port from now on. */
static __always_inline void record_bound(struct sock *sk)
{
	if (record_holders && holder_proto(sk) == IPPROTO_UDP)
		record_holder_of(current_task(), sk, IPPROTO_UDP, false);
}

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

	if (!e)
		return NULL;
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

	if (!incidents_open() || holder_proto(sk) != proto)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	key.netns = sock_netns(sk);
	key.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!incident_port_of(&key, sk))
		return;
	e = incident_reserve(BW_INCIDENT_RECOVERED);
	if (!e)
		return;
	/* bindwatch's own checks (wait-free, free) take the port and let go
	 * at once: never the recovery, a note that the port was free. */
	e->probe = is_probe(sk);
	e->netns = key.netns;
	e->proto = proto;
	e->syscall = syscall;
	e->family = family;
	sock_local_addr(sk, family, e->addr, &e->port);
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
	if (is_probe(sk) || !port_wanted(key->port) || !netns_wanted() ||
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
	e->has_holder = 1;
	bpf_ringbuf_submit(e, 0);
}

/*
 * Hooks that see a call's return but not its arguments (kretprobes; syscall
 * exit tracepoints on kernels before 5.15, which lack bpf_task_pt_regs)
 * pair with an entry hook that stashes the arguments per thread. The return
 * hook always deletes the entry; the map is LRU so an entry orphaned by a
 * missed return (kretprobe maxactive, a thread killed in the call) cannot
 * fill it.
 */
struct call_args {
	__u64 arg[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* thread id */
	__type(value, struct call_args);
} inflight SEC(".maps");

static __always_inline int stash_args(__u64 a0, __u64 a1, __u64 a2)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call_args a = { .arg = { a0, a1, a2 } };

	bpf_map_update_elem(&inflight, &tid, &a, BPF_ANY);
	return 0;
}

/* Take (and always remove) this thread's stashed arguments. */
static __always_inline bool pop_args(struct call_args *out)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call_args *a = bpf_map_lookup_elem(&inflight, &tid);

	if (!a)
		return false;
	*out = *a;
	bpf_map_delete_elem(&inflight, &tid);
	return true;
}

/* ---- tracepoint backend: syscalls:sys_{enter,exit}_{bind,listen} ------- */

/*
 * Where bpf_task_pt_regs exists (5.15+), only the exit tracepoints are
 * used: the return value says whether to do anything at all, and the
 * arguments are still in the task's saved user registers, so the success
 * path reads them only when the holder registry needs the socket. Older
 * kernels pair the exits with the enter tracepoints (args_in_regs = 0, set
 * by Go from a feature probe; the verifier prunes the branch not taken,
 * helper call included), and then every exit, success or not, must
 * consume its stash.
 */
volatile const __u8 args_in_regs = 1;

/*
 * The one place that decides where a syscall's first three arguments come
 * from at its exit. Every exit program calls exit_args() first: paired, it
 * takes (and so always removes) the stash the enter program left, and
 * false means there is none (the call began before tracing did). With
 * registers it does nothing yet: syscall_args() reads them only once there
 * is work to do, which the success path mostly has not.
 */
static __always_inline bool exit_args(struct call_args *a)
{
	return args_in_regs || pop_args(a);
}

/* The arguments exit_args() made available: from the stash, or now from
 * the task's saved user registers. */
static __always_inline void syscall_args(struct call_args *a)
{
	struct pt_regs *regs;

	if (!args_in_regs)
		return;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	a->arg[0] = PT_REGS_PARM1_CORE_SYSCALL(regs);
	a->arg[1] = PT_REGS_PARM2_CORE_SYSCALL(regs);
	a->arg[2] = PT_REGS_PARM3_CORE_SYSCALL(regs);
}

/* The socket behind the call's fd (its first argument), at its exit. */
static __always_inline struct sock *call_sock(struct call_args *a)
{
	syscall_args(a);
	return sock_from_fd(a->arg[0]);
}

SEC("tracepoint/syscalls/sys_enter_bind")
int tp_enter_bind(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_listen")
int tp_enter_listen(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(ctx->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int tp_exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	struct call_args a = {};
	struct bind_req req = {};
	struct fold_key key = {};
	struct sock *sk;
	__u64 now;
	int fd;

	if (!exit_args(&a))
		return 0;
	if (ret == 0) {
		/* Only the holder registry and open incidents have work on success. */
		if ((record_holders || incidents_open()) && (sk = call_sock(&a))) {
			record_bound(sk);
			note_taken(sk, IPPROTO_UDP, BW_SYSCALL_BIND);
		}
		return 0;
	}
	if (!errno_wanted(-ret) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	syscall_args(&a);
	fd = a.arg[0];
	if (read_sockaddr(&req, (void *)a.arg[1], a.arg[2], true))
		return 0;
	now = bpf_ktime_get_boot_ns();
	if (!fold_or_report(&key, -ret, BW_SYSCALL_BIND, req.port, fd, now))
		return 0;
	sk = sock_from_fd(fd);
	if (!sk || !is_inet(sk))
		return 0;
	return emit_failure(sk, &req, NULL, BW_SYSCALL_BIND, BW_HOOK_TP_EXIT_BIND, -ret, &key, now);
}

SEC("tracepoint/syscalls/sys_exit_listen")
int tp_exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	struct call_args a = {};
	struct sock *sk;

	if (!exit_args(&a))
		return 0;
	if (ret == 0) {
		if ((record_holders || incidents_open()) && (sk = call_sock(&a))) {
			record_listener(sk);
			note_taken(sk, IPPROTO_TCP, BW_SYSCALL_LISTEN);
		}
		return 0;
	}
	if (!errno_wanted(-ret) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	sk = call_sock(&a);
	if (!sk)
		return 0;
	return report_sock_failure(sk, NULL, BW_SYSCALL_LISTEN, BW_HOOK_TP_EXIT_LISTEN, -ret);
}

/*
 * connect(), sendto(), sendmsg(): only their failures that may be an
 * autobind's are looked at. With bpf_task_pt_regs (5.15+) nothing runs on
 * entry; before, the enter programs stash the fd and the address the exit
 * needs: every connect(), a sendto() only when it names an address, and
 * sendmsg() not at all (Go leaves its programs out: which one names an
 * address is in user memory, and every send would pay a stash).
 */
SEC("tracepoint/syscalls/sys_enter_connect")
int tp_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int tp_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	/* sendto(fd, buf, len, flags, addr, addrlen): the exit needs fd and
	 * addr. Without an address (send(), a connected socket) there is no
	 * autobind to report: nothing is stored. */
	if (!ctx->args[4])
		return 0;
	return stash_args(ctx->args[0], ctx->args[4], ctx->args[5]);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int tp_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return stash_args(ctx->args[0], ctx->args[1], 0);
}

/* The socket of fd and the destination at uaddr (user memory). */
static __always_inline int implicit_failed(int fd, void *uaddr, int addrlen, long ret, __u8 syscall, __u8 hook)
{
	struct bind_req dst = {};

	if (!pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	if (!uaddr || read_sockaddr(&dst, uaddr, addrlen, true))
		return 0;
	return report_implicit(sock_from_fd(fd), &dst, syscall, hook, -ret, fd);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tp_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct call_args a = {};
	long ret = ctx->ret;

	if (!exit_args(&a) || !implicit_errno(ret))
		return 0;
	syscall_args(&a);
	return implicit_failed(a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_SYSCALL_CONNECT, BW_HOOK_TP_EXIT_CONNECT);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int tp_exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	struct call_args a = {};
	struct pt_regs *regs;
	long ret = ctx->ret;

	if (!exit_args(&a) || !implicit_errno(ret))
		return 0;
	if (args_in_regs) {
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		a.arg[0] = PT_REGS_PARM1_CORE_SYSCALL(regs);
		a.arg[1] = PT_REGS_PARM5_CORE_SYSCALL(regs);
		a.arg[2] = BW_SYSCALL_PARM6_CORE(regs);
	}
	return implicit_failed(a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_SYSCALL_SENDTO, BW_HOOK_TP_EXIT_SENDTO);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int tp_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	struct call_args a = {};
	struct user_msghdr msg = {};
	long ret = ctx->ret;

	if (!exit_args(&a) || !implicit_errno(ret))
		return 0;
	syscall_args(&a);
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a.arg[1]))
		return 0;
	return implicit_failed(a.arg[0], msg.msg_name, msg.msg_namelen, ret, BW_SYSCALL_SENDMSG, BW_HOOK_TP_EXIT_SENDMSG);
}

/* ---- io_uring: IORING_OP_BIND and IORING_OP_LISTEN (Linux 6.11+) ---------
 *
 * io_uring binds and listens without the bind and listen syscalls, so the
 * syscall tracepoints above never see them; the kernel-function backends
 * do (inet_bind, inet_listen). For the tracepoint backend this program
 * reads each completion: a bind or listen request's result is its CQE's,
 * its socket the request's file, and a bind's address the kernel's copy of
 * it in the request's async data (io_bind_prep). It returns at its first
 * comparison for every other opcode. Loaded only where the kernel has
 * IORING_OP_BIND (struct io_bind in its BTF). A request with
 * IOSQE_CQE_SKIP_SUCCESS posts no completion when it succeeds: such a
 * listen is not recorded as a holder (a failure always posts one).
 */
/*
 * Where io_bind_prep() left the address in the request's async data: a
 * struct io_async_msghdr's addr (6.11's layout), or a sockaddr_storage at
 * its start (later kernels, and stable kernels the change was backported
 * to — so no version tells). Go finds out once, at start, with an io_uring
 * bind of its own socket (uring_calib_ino: its inode, which names it in
 * any pid namespace) to a port it names (uring_calib_port):
 * 0 not known (io_uring binds are then reported without their address),
 * URING_ADDR_STORAGE or URING_ADDR_MSGHDR.
 */
enum { URING_ADDR_STORAGE = 1, URING_ADDR_MSGHDR = 2 };
volatile __u8 uring_addr_at;
volatile __u64 uring_calib_ino;
volatile __u16 uring_calib_port;

/* The calibrating bind: which place holds the port Go named. */
static __always_inline void uring_calibrate(struct io_async_msghdr *io, int len)
{
	struct bind_req a = {}, b = {};

	if (!read_sockaddr(&a, io, len, false) && a.port == uring_calib_port)
		uring_addr_at = URING_ADDR_STORAGE;
	else if (!read_sockaddr(&b, &io->addr, len, false) && b.port == uring_calib_port)
		uring_addr_at = URING_ADDR_MSGHDR;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(uring_complete, void *ring, void *request)
{
	struct io_kiocb *req = request;
	__u8 op = BPF_CORE_READ(req, opcode);
	struct io_async_msghdr *io;
	struct bind_req breq = {};
	struct socket *sock;
	struct file *file;
	struct sock *sk;
	__s32 res;

	if (op != bpf_core_enum_value(enum io_uring_op, IORING_OP_BIND) &&
	    op != bpf_core_enum_value(enum io_uring_op, IORING_OP_LISTEN))
		return 0;
	file = BPF_CORE_READ(req, file);
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = sock ? BPF_CORE_READ(sock, sk) : NULL;
	if (!sk || !is_inet(sk))
		return 0;
	/* The request's own result (io_req_set_res): the tracepoint's third
	 * argument is the CQE only since 6.16 (before, its user_data). */
	res = BPF_CORE_READ(req, cqe.res);
	if (op == bpf_core_enum_value(enum io_uring_op, IORING_OP_BIND) && uring_calib_ino &&
	    sock_inode(sk) == uring_calib_ino) {
		io = BPF_CORE_READ(req, async_data);
		if (io)
			uring_calibrate(io, BPF_CORE_READ((struct io_bind *)req, addr_len));
		return 0;
	}
	if (op == bpf_core_enum_value(enum io_uring_op, IORING_OP_LISTEN)) {
		if (res == 0) {
			record_listener(sk);
			note_taken(sk, IPPROTO_TCP, BW_SYSCALL_LISTEN);
			return 0;
		}
		if (res > 0 || !errno_wanted(-res) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
			return 0;
		return report_sock_failure(sk, NULL, BW_SYSCALL_LISTEN, BW_HOOK_IOURING_LISTEN, -res);
	}
	if (res == 0) {
		if (record_holders || incidents_open()) {
			record_bound(sk);
			note_taken(sk, IPPROTO_UDP, BW_SYSCALL_BIND);
		}
		return 0;
	}
	if (res > 0 || !errno_wanted(-res) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	io = BPF_CORE_READ(req, async_data);
	if (io && uring_addr_at) {
		void *addr = uring_addr_at == URING_ADDR_STORAGE ? (void *)io : (void *)&io->addr;

		if (read_sockaddr(&breq, addr, BPF_CORE_READ((struct io_bind *)req, addr_len), false))
			return 0;
	}
	return report_sock_failure(sk, &breq, BW_SYSCALL_BIND, BW_HOOK_IOURING_BIND, -res);
}

/* ---- process tree following (--pid --follow-children, bindwatch run) ---- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(follow_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 one = 1;

	/* New threads share the tgid: nothing to add. */
	if (ptgid == ctgid || !bpf_map_lookup_elem(&traced_pids, &ptgid))
		return 0;
	/* A full map (a tree of more than its entries alive at once, which
	 * the traced program controls) loses the child: counted, so that
	 * the stop record says so. */
	if (bpf_map_update_elem(&traced_pids, &ctgid, &one, BPF_ANY))
		count_stat(STAT_UNFOLLOWED);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(follow_exit, struct task_struct *task)
{
	__u32 tgid = task->tgid;

	/* Forget a process when its leader exits, so a recycled pid is not traced. */
	if (task->pid == tgid)
		bpf_map_delete_elem(&traced_pids, &tgid);
	return 0;
}

/* A process in the lineage map has ended: note when and how (see lineage). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(lineage_exit, struct task_struct *task)
{
	__u32 tgid = task->tgid;
	struct lineage_val *v = bpf_map_lookup_elem(&lineage, &tgid);

	if (!v || v->exit_ns)
		return 0;
	/* Only the process's last thread: do_exit() has counted it off signal->live. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (v->start_ns != BPF_CORE_READ(task, group_leader, start_boottime))
		return 0;
	v->exit_code = BPF_CORE_READ(task, exit_code);
	v->exit_ns = bpf_ktime_get_boot_ns();
	return 0;
}

/* ---- kernel-function backends: inet_bind, inet6_bind, inet_listen -------- */

/*
 * inet_bind/inet6_bind are the bind op of every AF_INET/AF_INET6 socket and
 * inet_listen the listen op of TCP ones, so these hooks also see binds that
 * never pass through the bind() syscall (io_uring's IORING_OP_BIND). Their
 * uaddr is the kernel's copy of the request (move_addr_to_kernel).
 */
static __always_inline int bind_returned(struct socket *sock, void *uaddr, int addr_len, int ret, __u8 hook)
{
	struct bind_req req = {};
	struct sock *sk;

	if (ret == 0) {
		if ((record_holders || incidents_open()) && (sk = BPF_CORE_READ(sock, sk))) {
			record_bound(sk);
			note_taken(sk, IPPROTO_UDP, BW_SYSCALL_BIND);
		}
		return 0;
	}
	if (ret > 0 || !errno_wanted(-ret) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || read_sockaddr(&req, uaddr, addr_len, false))
		return 0;
	return report_sock_failure(sk, &req, BW_SYSCALL_BIND, hook, -ret);
}

static __always_inline int listen_returned(struct socket *sock, int ret)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);

	if (!sk)
		return 0;
	if (ret == 0) {
		record_listener(sk);
		note_taken(sk, IPPROTO_TCP, BW_SYSCALL_LISTEN);
		return 0;
	}
	if (!errno_wanted(-ret) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	return report_sock_failure(sk, NULL, BW_SYSCALL_LISTEN, BW_HOOK_INET_LISTEN, -ret);
}

/* fentry backend: fexit sees the arguments and the return value at once. */

SEC("fexit/inet_bind")
int BPF_PROG(fexit_inet_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return bind_returned(sock, uaddr, addr_len, ret, BW_HOOK_INET_BIND);
}

SEC("fexit/inet6_bind")
int BPF_PROG(fexit_inet6_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return bind_returned(sock, uaddr, addr_len, ret, BW_HOOK_INET6_BIND);
}

SEC("fexit/inet_listen")
int BPF_PROG(fexit_inet_listen, struct socket *sock, int backlog, int ret)
{
	return listen_returned(sock, ret);
}

/* kprobe backend: kprobe + kretprobe pairs, arguments stashed between. */

SEC("kprobe/inet_bind")
int BPF_KPROBE(kprobe_inet_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	return stash_args((__u64)sock, (__u64)uaddr, addr_len);
}

SEC("kretprobe/inet_bind")
int BPF_KRETPROBE(kretprobe_inet_bind, int ret)
{
	struct call_args a;

	if (!pop_args(&a))
		return 0;
	return bind_returned((struct socket *)a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_HOOK_INET_BIND);
}

SEC("kprobe/inet6_bind")
int BPF_KPROBE(kprobe_inet6_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	return stash_args((__u64)sock, (__u64)uaddr, addr_len);
}

SEC("kretprobe/inet6_bind")
int BPF_KRETPROBE(kretprobe_inet6_bind, int ret)
{
	struct call_args a;

	if (!pop_args(&a))
		return 0;
	return bind_returned((struct socket *)a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_HOOK_INET6_BIND);
}

SEC("kprobe/inet_listen")
int BPF_KPROBE(kprobe_inet_listen, struct socket *sock)
{
	return stash_args((__u64)sock, 0, 0);
}

SEC("kretprobe/inet_listen")
int BPF_KRETPROBE(kretprobe_inet_listen, int ret)
{
	struct call_args a;

	if (!pop_args(&a))
		return 0;
	return listen_returned((struct socket *)a.arg[0], ret);
}

/*
 * Implicit binds in the kernel-function backends. TCP: inet_hash_connect
 * picks connect()'s local port (tcp_v4_connect and tcp_v6_connect have set
 * the destination on the socket before they call it, and reset it after
 * it fails). UDP: inet_dgram_connect (connect) and inet_sendmsg /
 * inet6_sendmsg (sendto, sendmsg) run inet_autobind; their destination is
 * their sockaddr argument (the kernel's copy). The fentry backend hooks
 * their returns; the kprobe backend the two connects only (a kprobe pair
 * on every send would stash on each: UDP sends are left to the other
 * backends).
 */
static __always_inline int hash_connect_returned(struct sock *sk, int ret)
{
	struct bind_req dst = {};
	__u16 family;

	if (ret != -EADDRNOTAVAIL || !errno_wanted(EADDRNOTAVAIL) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	dst.family = family;
	dst.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6)
		BPF_CORE_READ_INTO(dst.addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	else
		BPF_CORE_READ_INTO((__u32 *)dst.addr, sk, __sk_common.skc_daddr);
	return report_implicit(sk, &dst, BW_SYSCALL_CONNECT, BW_HOOK_INET_HASH_CONNECT, EADDRNOTAVAIL, IPPROTO_TCP);
}

static __always_inline int udp_autobind_returned(struct socket *sock, void *uaddr, int addr_len, int ret, __u8 syscall,
						 __u8 hook)
{
	struct bind_req dst = {};

	if (ret != -EAGAIN || !errno_wanted(EAGAIN) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
		return 0;
	if (!uaddr || read_sockaddr(&dst, uaddr, addr_len, false))
		return 0;
	return report_implicit(BPF_CORE_READ(sock, sk), &dst, syscall, hook, EAGAIN, IPPROTO_UDP);
}

SEC("fexit/inet_hash_connect")
int BPF_PROG(fexit_inet_hash_connect, struct inet_timewait_death_row *death_row, struct sock *sk, int ret)
{
	return hash_connect_returned(sk, ret);
}

SEC("fexit/inet_dgram_connect")
int BPF_PROG(fexit_inet_dgram_connect, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags, int ret)
{
	return udp_autobind_returned(sock, uaddr, addr_len, ret, BW_SYSCALL_CONNECT, BW_HOOK_INET_DGRAM_CONNECT);
}

/* sendto() and sendmsg() both arrive as a msghdr: msg_name is the kernel's
 * copy of the address (move_addr_to_kernel). Which syscall it was is not
 * known here: "sendmsg" stands for both. */
static __always_inline int sendmsg_returned(struct socket *sock, struct msghdr *msg, int ret, __u8 hook)
{
	if (ret != -EAGAIN)
		return 0;
	return udp_autobind_returned(sock, BPF_CORE_READ(msg, msg_name), BPF_CORE_READ(msg, msg_namelen), ret,
				     BW_SYSCALL_SENDMSG, hook);
}

SEC("fexit/inet_sendmsg")
int BPF_PROG(fexit_inet_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	return sendmsg_returned(sock, msg, ret, BW_HOOK_INET_SENDMSG);
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(fexit_inet6_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	return sendmsg_returned(sock, msg, ret, BW_HOOK_INET6_SENDMSG);
}

SEC("kprobe/inet_hash_connect")
int BPF_KPROBE(kprobe_inet_hash_connect, struct inet_timewait_death_row *death_row, struct sock *sk)
{
	return stash_args((__u64)sk, 0, 0);
}

SEC("kretprobe/inet_hash_connect")
int BPF_KRETPROBE(kretprobe_inet_hash_connect, int ret)
{
	struct call_args a;

	if (!pop_args(&a))
		return 0;
	return hash_connect_returned((struct sock *)a.arg[0], ret);
}

SEC("kprobe/inet_dgram_connect")
int BPF_KPROBE(kprobe_inet_dgram_connect, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	return stash_args((__u64)sock, (__u64)uaddr, addr_len);
}

SEC("kretprobe/inet_dgram_connect")
int BPF_KRETPROBE(kretprobe_inet_dgram_connect, int ret)
{
	struct call_args a;

	if (!pop_args(&a))
		return 0;
	return udp_autobind_returned((struct socket *)a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_SYSCALL_CONNECT,
				     BW_HOOK_INET_DGRAM_CONNECT);
}

/* ---- registry seeding ----------------------------------------------------- */

/*
 * Run once at start (a BPF iterator, read to its end by Go): record every
 * TCP listener and bound UDP socket that exists already, so a holder that
 * took its port before bindwatch started is named as surely as one that
 * takes it later. The
 * iterator visits each files table once (threads sharing it are skipped).
 * BPF_NOEXIST: a listen()/bind() seen since attaching is newer than this
 * snapshot.
 */
SEC("iter/task_file")
int seed_holders(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct socket *sock;
	struct sock *sk;
	__u8 proto, state;

	if (!task || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = sock ? BPF_CORE_READ(sock, sk) : NULL;
	if (!sk)
		return 0;
	proto = holder_proto(sk);
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* What listen()/bind() would have recorded: TCP listeners, and UDP
	 * sockets bound to a port but not connected (servers, not clients). */
	if ((proto == IPPROTO_TCP && state == TCP_LISTEN) ||
	    (proto == IPPROTO_UDP && state == TCP_CLOSE && BPF_CORE_READ(sk, __sk_common.skc_num)))
		record_holder_of(task, sk, proto, true);
	return 0;
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
	sock_local_addr(sk, family, e->addr, &e->port);
	e->port = key->port;
	e->queued = queued;
	e->may_migrate = migrate;
	if (rec) {
		__builtin_memcpy(&e->holder, rec, sizeof(*rec));
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
	key.netns = sock_netns(sk);
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
	key.netns = sock_netns(sk);
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
