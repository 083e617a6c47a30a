// SPDX-License-Identifier: GPL-2.0
/*
 * Holder lookup helpers for internal/resolve, run on demand as BPF
 * iterators (no hooks, nothing attached while idle):
 *
 *  - socket_owners (iter/task_file) walks every open file of every process
 *    in the kernel and reports the sockets whose inode user space asked
 *    about, so mapping a socket inode to its processes costs one pass in the
 *    kernel instead of a readlink() per fd under /proc (50,000 fds: ~1 ms
 *    against ~150 ms).
 *  - timewait_sockets (iter/tcp) reports SO_REUSEADDR/SO_REUSEPORT of the
 *    TIME_WAIT sockets on the ports user space asked about: sock_diag does
 *    not carry them, and they decide whether a new bind() may succeed.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "holders.h"

char LICENSE[] SEC("license") = "GPL";

/* Referenced so clang emits the records' BTF even though their only uses
 * are locals that -O2 keeps in registers: bpf2go's -type looks them up. */
const struct socket_owner *unused_socket_owner __attribute__((unused));
const struct timewait_socket *unused_timewait_socket __attribute__((unused));

#define AF_INET 2
#define AF_INET6 10

/* Socket inodes to report owners of, filled by user space before each read
 * of the socket_owners iterator. The value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} wanted_inodes SEC(".maps");

/* Local ports (host order) whose TIME_WAIT sockets timewait_sockets reports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} wanted_ports SEC(".maps");

SEC("iter/task_file")
int socket_owners(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct socket_owner rec = {};
	struct socket *sock;
	struct sock *sk;
	__u64 ino;

	if (!task || !file)
		return 0;
	/* bpf_sock_from_file checks f_op == &socket_file_ops: only real
	 * sockets pass, whatever the inode number space of other files. */
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	ino = BPF_CORE_READ(file, f_inode, i_ino);
	if (!bpf_map_lookup_elem(&wanted_inodes, &ino))
		return 0;

	/* The kernel's task_file iterator already skips threads that share
	 * their leader's file table; a thread with its own table (unshare
	 * CLONE_FILES) is reported under its tgid and deduped by user space. */
	rec.inode = ino;
	rec.tgid = BPF_CORE_READ(task, tgid);
	rec.fd = ctx->fd;
	sk = BPF_CORE_READ(sock, sk);
	if (sk) {
		rec.has_sock = 1;
		rec.reuseaddr = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse) != 0;
		rec.reuseport = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport);
		rec.v6only = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_ipv6only);
	}
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
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
