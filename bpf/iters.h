/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Records that bpf/iters.bpf.c writes into its iterators' seq_files, read
 * by internal/resolve. Go sees them through bpf2go's -type, so the layout is
 * explicit: fixed-width fields, no implicit padding.
 */
#ifndef BINDWATCH_ITERS_H
#define BINDWATCH_ITERS_H

/*
 * socket_owner: one open file of one task that is a socket whose inode is in
 * the wanted_inodes map, or (bound_only) a TCP socket bound to a port but
 * neither listening nor connected whose (netns, port) is in wanted_bound.
 * Go dedupes by (tgid, inode).
 */
struct socket_owner {
	__u64 inode;
	__u32 tgid;
	__u32 fd;
	/* sk->__sk_common bitfields: SO_REUSEADDR (skc_reuse),
	 * SO_REUSEPORT (skc_reuseport), IPV6_V6ONLY (skc_ipv6only). */
	__u8 reuseaddr;
	__u8 reuseport;
	__u8 v6only;
	__u8 has_sock;
	/* The socket's own address, filled when has_sock: sock_diag lists
	 * bound-only TCP sockets only from 6.8, so before that these are all
	 * that is known of them. */
	__u8 family;
	__u8 bound_only;
	__u16 port;         /* host order */
	__u32 bound_dev_if; /* SO_BINDTODEVICE */
	__u32 uid;          /* sk_uid */
	__u8 saddr[16];     /* IPv4 in the first 4 bytes */
};

/*
 * timewait_socket: one TIME_WAIT socket on a wanted port. sock_diag reports
 * TIME_WAIT sockets without their SO_REUSEADDR/SO_REUSEPORT flags, yet those
 * decide whether a new bind() may reuse the port, so they are read here and
 * matched to sock_diag's entries by the 4-tuple.
 */
struct timewait_socket {
	__u8 family;
	__u8 reuseaddr;
	__u8 reuseport;
	__u8 pad;
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

/*
 * inode_filter: a first, cheap test of a socket inode before the
 * wanted_inodes lookup, so that the thousands of sockets nobody asked about
 * cost one load each instead of a hash lookup. Bit (inode % 4096) is set
 * for every inode in wanted_inodes, and every bit while bound-only sockets
 * are looked for (their inodes are not known).
 */
#define INODE_FILTER_BITS 4096
struct inode_filter {
	__u64 bits[INODE_FILTER_BITS / 64];
};

#endif /* BINDWATCH_ITERS_H */
