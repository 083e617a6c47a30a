// SPDX-License-Identifier: GPL-2.0
/*
 * Socket lookups for internal/resolve, run on demand as BPF iterators (no
 * hooks, nothing attached while idle). Not to be confused with the holder
 * registry of bindwatch.bpf.c, which records holders as they bind:
 *
 *  - socket_owners (iter/task) walks the fd table of every process in the
 *    kernel and reports the sockets whose inode user space asked about, so
 *    mapping a socket inode to its processes costs one pass in the kernel
 *    instead of a readlink() per fd under /proc (53,000 fds on 2 cores:
 *    3.4 ms against 127 ms). It needs the bpf_rdonly_cast kfunc (6.2) and
 *    bpf_loop (5.17).
 *  - socket_owners_per_file (iter/task_file, 5.8) reports the same records
 *    from one call per open file, reading through bpf_probe_read_kernel():
 *    slower, but it loads on the kernels socket_owners does not (5.10, 6.1).
 *    internal/resolve loads exactly one of the two.
 *  - timewait_sockets (iter/tcp) reports SO_REUSEADDR/SO_REUSEPORT of the
 *    TIME_WAIT sockets on the ports user space asked about: sock_diag does
 *    not carry them, and they decide whether a new bind() may succeed.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "uapi.h"
#include "iters.h"

char LICENSE[] SEC("license") = "GPL";

/* Referenced so clang emits the records' BTF even though their only uses
 * are locals that -O2 keeps in registers: bpf2go's -type looks them up. */
const struct socket_owner *unused_socket_owner __attribute__((unused));
const struct timewait_socket *unused_timewait_socket __attribute__((unused));
const struct inode_filter *unused_inode_filter __attribute__((unused));

/* Socket inodes to report owners of, filled by user space before each read
 * of the socket_owners iterator. The value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} wanted_inodes SEC(".maps");

/* (network namespace inode << 16 | port) whose bound-only TCP sockets the
 * socket-owner programs report even when their inode was not asked for:
 * before 6.8 sock_diag does not list them, so user space cannot know their
 * inodes. The value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} wanted_bound SEC(".maps");

/* Entry 0 is 1 while wanted_bound is in use: without it, the socket of a
 * file nobody asked about is not read at all (that read doubled the
 * iterator's time on a host with 50,000 open sockets). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bound_lookup SEC(".maps");

/* Entry 0 is the socket_owners walk's first test of a socket (see struct
 * inode_filter), filled by user space with wanted_inodes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inode_filter);
} wanted_filter SEC(".maps");

/* Local ports (host order) whose TIME_WAIT sockets timewait_sockets reports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} wanted_ports SEC(".maps");

/* Casts a kernel pointer read as a number to a typed, read-only pointer. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* Writes the socket_owner record of file, a socket file with inode number
 * ino open as fd in process tgid, if user space asked about that inode or
 * it is a bound-only TCP socket on a (netns, port) in wanted_bound. */
static __noinline void report_owner(struct seq_file *seq, struct file *file,
				    __u64 ino, __u32 tgid, __u32 fd)
{
	struct socket_owner rec = {};
	struct socket *sock;
	struct sock *sk;
	__u64 bound_key;
	__u32 zero = 0;
	__u32 *bound_on;
	bool wanted;

	wanted = bpf_map_lookup_elem(&wanted_inodes, &ino) != NULL;
	if (!wanted) {
		bound_on = bpf_map_lookup_elem(&bound_lookup, &zero);
		if (!bound_on || !*bound_on)
			return;
	}
	/* A socket file's private_data is its struct socket. */
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!wanted) {
		if (!sk)
			return;
		/* A TCP socket that keeps its port while CLOSE was bound by
		 * the user: tcp_set_state() releases the port of the others
		 * (inet_put_port, which zeroes skc_num). */
		if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP ||
		    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_CLOSE)
			return;
		bound_key = (__u64)BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) << 16 |
			    BPF_CORE_READ(sk, __sk_common.skc_num);
		if (!(bound_key & 0xffff) || !bpf_map_lookup_elem(&wanted_bound, &bound_key))
			return;
		rec.bound_only = 1;
	}
	rec.inode = ino;
	rec.tgid = tgid;
	rec.fd = fd;
	if (sk) {
		rec.has_sock = 1;
		rec.reuseaddr = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse) != 0;
		rec.reuseport = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport);
		rec.v6only = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_ipv6only);
		rec.family = BPF_CORE_READ(sk, __sk_common.skc_family);
		rec.port = BPF_CORE_READ(sk, __sk_common.skc_num);
		rec.bound_dev_if = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
		rec.uid = BPF_CORE_READ(sk, sk_uid.val);
		if (rec.family == AF_INET6) {
			BPF_CORE_READ_INTO(&rec.saddr, sk, __sk_common.skc_v6_rcv_saddr);
		} else {
			__be32 saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);

			__builtin_memcpy(rec.saddr, &saddr, sizeof(saddr));
		}
	}
	bpf_seq_write(seq, &rec, sizeof(rec));
}

/* State of one process's fd-table walk, shared with the bpf_loop callbacks. */
struct fd_walk {
	struct seq_file *seq;
	struct file **fds;
	unsigned long *open_fds;
	unsigned long open_word; /* open_fds word of the current batch */
	__u64 first;             /* the current batch's first fd */
	__u64 files[8];          /* its struct file pointers, as numbers */
	__u64 inos[8];           /* their inode numbers */
	__u32 sockets;           /* bit k: fd first + k is an open socket that may be wanted */
	__u32 tgid;
	struct inode_filter *filter;
};

/* Reports socket first + k of the batch if it was asked about. A
 * callback, so the verifier checks report_owner once, not once per fd of
 * the batch. */
static long report_socket(__u64 k, void *data)
{
	struct fd_walk *w = data;
	struct file *file;

	if (k >= 8)
		return 1;
	if (!(w->sockets & (1U << k)))
		return 0;
	file = bpf_rdonly_cast((void *)w->files[k], bpf_core_type_id_kernel(struct file));
	report_owner(w->seq, file, w->inos[k], w->tgid, w->first + k);
	return 0;
}

/* Checks fds 8 * batch .. 8 * batch + 7. Every open file and its inode are
 * read, most of them cold in the cache: the loads are issued in passes,
 * first every file's f_inode, then every inode's mode and number, so that
 * the loads of one pass, which do not depend on each other, overlap their
 * cache misses instead of paying them one fd after the other. Nothing in
 * the passes branches (a branch per fd would give the verifier 2^8 paths
 * to walk): a closed fd's NULL reads as zeroes, and the socket test is
 * arithmetic. */
static long check_fds(__u64 batch, void *data)
{
	struct fd_walk *w = data;
	struct inode *inodes[8];
	__u64 first = batch * 8;
	__u32 sockets = 0;
	__u8 open;
	int k;

	/* open_fds has a bit per fd: one read per 64 fds skips closed ones
	 * without touching the fd array. max_fds is a multiple of 64
	 * (BITS_PER_LONG), so a batch never reads past the array. */
	if ((first & 63) == 0 &&
	    bpf_probe_read_kernel(&w->open_word, sizeof(w->open_word), &w->open_fds[first / 64]))
		return 1;
	open = w->open_word >> (first & 63);
	if (!open)
		return 0;
	if (bpf_probe_read_kernel(w->files, sizeof(w->files), &w->fds[first]))
		return 0;
	/* Typed as kernel structs, the pointers are dereferenced with plain
	 * (fault-checked, CO-RE-relocated) loads instead of a
	 * bpf_probe_read_kernel() call per field. */
#pragma unroll
	for (k = 0; k < 8; k++) {
		struct file *file = bpf_rdonly_cast((void *)w->files[k], bpf_core_type_id_kernel(struct file));

		inodes[k] = file->f_inode;
	}
#pragma unroll
	for (k = 0; k < 8; k++) {
		/* Socket inode numbers come from sockfs' own counter and may
		 * equal a regular file's on another filesystem: the type says
		 * which. not_sock is 0 for a socket, at most S_IFMT else, so
		 * not_sock - 1 has its top bit set for a socket only. */
		__u64 not_sock = (inodes[k]->i_mode & S_IFMT) ^ S_IFSOCK;
		__u64 ino = inodes[k]->i_ino;
		__u64 maybe = w->filter->bits[(ino / 64) % (INODE_FILTER_BITS / 64)] >> (ino % 64);

		sockets |= ((not_sock - 1) >> 63 & maybe & 1) << k;
		w->inos[k] = ino;
	}
	w->sockets = sockets & open;
	if (w->sockets) {
		w->first = first;
		bpf_loop(8, report_socket, w, 0);
	}
	return 0;
}

/*
 * One call per task; it walks the task's fd table itself. The kernel's
 * iter/task_file does the same walk but calls the program once per open file,
 * taking and dropping a reference on each: with 53,000 open fds it took
 * 20 ms where this walk takes 3.4 ms.
 */
SEC("iter/task")
int socket_owners(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct files_struct *files;
	struct fdtable *fdt;
	struct fd_walk w = {};
	__u32 zero = 0;

	if (!task)
		return 0;
	files = BPF_CORE_READ(task, files);
	if (!files) /* kernel thread, or exiting */
		return 0;
	/* Threads share their leader's fd table: walk it once, from the
	 * leader. A thread with a table of its own (unshare(CLONE_FILES)) is
	 * walked too and reported under its tgid. */
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid) &&
	    files == BPF_CORE_READ(task, group_leader, files))
		return 0;
	fdt = BPF_CORE_READ(files, fdt);
	w.seq = ctx->meta->seq;
	w.fds = BPF_CORE_READ(fdt, fd);
	w.open_fds = BPF_CORE_READ(fdt, open_fds);
	w.tgid = BPF_CORE_READ(task, tgid);
	w.filter = bpf_map_lookup_elem(&wanted_filter, &zero);
	if (!w.filter)
		return 0;
	bpf_loop(BPF_CORE_READ(fdt, max_fds) / 8, check_fds, &w, 0);
	return 0;
}

/*
 * socket_owners for kernels without bpf_rdonly_cast (before 6.2) or bpf_loop
 * (before 5.17). The kernel's task_file iterator (5.8) walks the fd tables
 * and calls this once per open file, holding a reference on it; it skips
 * threads that share their group leader's fd table, so each table is seen
 * once, as socket_owners sees it. Every field is read with
 * bpf_probe_read_kernel() (BPF_CORE_READ), which iterator programs may call
 * since 5.5.
 */
SEC("iter/task_file")
int socket_owners_per_file(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct inode *inode;
	__u64 ino;

	if (!file || !task)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	/* As in check_fds: only a socket inode's number is a socket's. */
	if (!inode || (BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	ino = BPF_CORE_READ(inode, i_ino);
	report_owner(ctx->meta->seq, file, ino, BPF_CORE_READ(task, tgid), ctx->fd);
	return 0;
}

SEC("iter/tcp")
int timewait_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct timewait_socket rec = {};
	__u16 port;

	if (!skc)
		return 0;
	/* Listeners and full sockets are owned by a file; socket_owners reads
	 * their flags. Only TIME_WAIT sockets have no file. */
	if (BPF_CORE_READ(skc, skc_state) != TCP_TIME_WAIT)
		return 0;
	port = BPF_CORE_READ(skc, skc_num);
	if (!bpf_map_lookup_elem(&wanted_ports, &port))
		return 0;

	rec.family = BPF_CORE_READ(skc, skc_family);
	/* inet_timewait_sock copies the closing socket's skc_reuse and
	 * skc_reuseport into its own sock_common (tw_reuse, tw_reuseport). */
	rec.reuseaddr = BPF_CORE_READ_BITFIELD_PROBED(skc, skc_reuse) != 0;
	rec.reuseport = BPF_CORE_READ_BITFIELD_PROBED(skc, skc_reuseport);
	rec.sport = port;
	rec.dport = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	if (rec.family == AF_INET6) {
		BPF_CORE_READ_INTO(&rec.saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&rec.daddr, skc, skc_v6_daddr);
	} else {
		__be32 saddr = BPF_CORE_READ(skc, skc_rcv_saddr);
		__be32 daddr = BPF_CORE_READ(skc, skc_daddr);

		__builtin_memcpy(rec.saddr, &saddr, sizeof(saddr));
		__builtin_memcpy(rec.daddr, &daddr, sizeof(daddr));
	}
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
