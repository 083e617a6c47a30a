/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Structures shared between bindwatch's BPF programs and its Go consumer.
 * bpf2go turns every struct named with -type into a Go type, so user space
 * never mirrors these by hand: change them here, run `make generate`.
 */
#ifndef BINDWATCH_H
#define BINDWATCH_H

#define BW_COMM_LEN 16
#define BW_MAX_PORT_RANGES 16

/* Which syscall failed. */
enum bw_syscall {
	BW_SYSCALL_BIND = 1,
	BW_SYSCALL_LISTEN = 2,
	/* Implicit binds: the kernel picks a local port itself (autobind). */
	BW_SYSCALL_CONNECT = 3,
	BW_SYSCALL_SENDTO = 4,
	BW_SYSCALL_SENDMSG = 5,
};

/* Which kernel hook saw the failure; Go names them. */
enum bw_hook {
	BW_HOOK_TP_EXIT_BIND = 1,
	BW_HOOK_TP_EXIT_LISTEN = 2,
	BW_HOOK_INET_BIND = 3,
	BW_HOOK_INET6_BIND = 4,
	BW_HOOK_INET_LISTEN = 5,
	BW_HOOK_IOURING_BIND = 6,   /* tp_btf/io_uring_complete, IORING_OP_BIND */
	BW_HOOK_IOURING_LISTEN = 7, /* tp_btf/io_uring_complete, IORING_OP_LISTEN */
	BW_HOOK_TP_EXIT_CONNECT = 8,
	BW_HOOK_TP_EXIT_SENDTO = 9,
	BW_HOOK_TP_EXIT_SENDMSG = 10,
	BW_HOOK_INET_HASH_CONNECT = 11,  /* TCP connect()'s autobind */
	BW_HOOK_INET_DGRAM_CONNECT = 12, /* UDP connect()'s autobind */
	BW_HOOK_INET_SENDMSG = 13,       /* UDP sendto()/sendmsg()'s autobind, IPv4 */
	BW_HOOK_INET6_SENDMSG = 14,      /* the same, IPv6 */
};

/* Bits of event.sock_flags: the failing socket's options. */
enum bw_sock_flag {
	BW_SOCK_REUSEADDR = 1 << 0,
	BW_SOCK_REUSEPORT = 1 << 1,
	BW_SOCK_V6ONLY = 1 << 2,
	BW_SOCK_FREEBIND = 1 << 3,
};

/* Bits of the errno filter. Only these errors are traced. */
enum bw_errno_bit {
	BW_ERR_EADDRINUSE = 1 << 0,
	BW_ERR_EADDRNOTAVAIL = 1 << 1,
	BW_ERR_EACCES = 1 << 2,
	BW_ERR_EINVAL = 1 << 3,
	/* connect()/sendto() of a UDP socket whose autobind found no port
	 * (inet_autobind returns EAGAIN); TCP's says EADDRNOTAVAIL. */
	BW_ERR_EAGAIN = 1 << 4,
};

/*
 * How much of a failing process's argv an event carries: its first
 * BW_ARGS_HEAD bytes and, when it is longer than the buffer, its last
 * BW_ARGS_TAIL bytes — a long Java command line keeps both its start and
 * its main class and flags. Go gets these as constants.
 */
enum bw_args_len {
	BW_ARGS_HEAD = 256,
	BW_ARGS_TAIL = 256,
	BW_ARGS_LEN = BW_ARGS_HEAD + BW_ARGS_TAIL,
};

/* Inclusive port range for the in-kernel --port filter. */
struct port_range {
	__u16 lo;
	__u16 hi;
};

/*
 * A holder of a port as the registry recorded it: a TCP socket when its
 * listen() succeeded, a UDP socket when its bind() did (or either as
 * seed_holders found it at start). The registry's value, and what a
 * failure event carries when the registry names a still-bound holder of
 * the failing port.
 */
struct holder_rec {
	__u64 sk;       /* kernel socket address: an identity only, never read by Go */
	__u64 inode;    /* socket inode, as in /proc/PID/fd and sock_diag */
	__u64 bound_ns; /* when it took the port: CLOCK_BOOTTIME in an event; in the
			 * registry, on the holder clock (bindwatch/holders.h); 0:
			 * seeded at start, not known */
	__u64 start_ns; /* owner's start, CLOCK_BOOTTIME */
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u16 family;
	__u16 port;
	__u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
	char comm[BW_COMM_LEN];
};

/*
 * How a process that took a port (or its parent at that moment) ended, as
 * lineage_exit() saw it: see the lineage map in bindwatch/holders.h.
 */
struct lineage_val {
	__u64 start_ns;  /* the process's start, CLOCK_BOOTTIME: a reused pid is another process */
	__u64 exit_ns;   /* when its last thread exited, CLOCK_BOOTTIME; 0 while it runs */
	__u32 exit_code; /* that thread's task->exit_code: status << 8, or the killing signal */
	__u32 pad;
};

/* Registry key: one recorded listener per port in each network namespace. */
struct holder_key {
	__u32 netns;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

/* Key for folding repeats of one process's failure in the kernel. */
struct fold_key {
	__u32 tgid;
	__u32 err;
	__u16 port;
	__u8 syscall;
	__u8 pad;
	/*
	 * Tells a process's sockets apart without walking fd -> socket on the
	 * hot path: the fd (tracepoint backend) or the protocol (kernel
	 * function backends, which have the socket at hand). A retry loop that
	 * re-creates its socket reuses the fd number, so it still folds.
	 */
	__u32 sock_hint;
};

/*
 * A fold: failures of one key counted in one generation of the fold table
 * (see the folds maps in bindwatch/folds.h). It names who failed, so the
 * repeats record needs nothing else — not even the key's event, which user
 * space may not have read yet.
 */
struct fold_val {
	__u64 folded;       /* failures folded into this entry (this generation) */
	__u64 last_emit_ns; /* when this key's last failure was reported (boot clock) */
	__u64 window_start; /* when its fold window began, on the fold clock (folds.h) */
	char comm[BW_COMM_LEN];
	__u16 protocol; /* the failing socket's IPPROTO_* */
	__u16 pad[3];
};

/*
 * Per-CPU session counters, summed by Go. failures is counted on its own,
 * so the stop record's failures = reported + folded + lost + unread is a
 * measurement: reported is what user space read, folded what it harvested
 * from the fold tables, unread what was left in the ring buffer.
 */
struct stats {
	__u64 failures;  /* every failure that passed the filters */
	__u64 lost;      /* ring buffer full: counted, not delivered */
	__u64 fold_full; /* reported one by one: the fold table was full */
	__u64 unfollowed; /* new processes of a followed tree left out: traced_pids was full */
	__u64 incident_lost; /* incident records (signal, released, recovered, port_shared) that found their ring buffer full */
};

/*
 * SO_MARK of bindwatch's own test binds (wait-free, free): failures of
 * such sockets are not traced. Setting SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW), so an
 * unprivileged process cannot use it to hide its failures.
 */
enum bw_mark {
	BW_PROBE_MARK = 0x62776174, /* "bwat" */
};

/* One failed bind()/listen(), captured at the moment of failure. */
struct event {
	__u64 ts_ns; /* CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u64 start_ns; /* process start, CLOCK_BOOTTIME */
	__u64 cap_effective;
	__u64 netns_cookie; /* the socket's network namespace's cookie (0: not known) */
	__u32 pid;        /* thread group id */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 netns; /* inode of the socket's network namespace */
	__u32 err;   /* positive errno */
	__s32 bound_dev_if;
	__u32 args_total; /* length of the whole argv (mm->arg_end - mm->arg_start) */
	__u16 family;
	__u16 sock_type;
	__u16 protocol;
	__u16 port; /* host order */
	__u8 syscall;
	__u8 hook;
	__u8 sock_flags;
	__u8 has_holder;
	__u16 args_len;      /* bytes of argv's head at args[0] */
	__u16 args_tail_len; /* bytes of argv's tail at args[BW_ARGS_HEAD] (0: none) */
	__u8 addr[16];
	/*
	 * Implicit binds (connect, sendto, sendmsg): where the call was going,
	 * from its sockaddr argument. dfamily 0: no destination (bind, listen).
	 */
	__u8 daddr[16];
	__u16 dport; /* host order */
	__u16 dfamily;
	__u32 pad_dest;
	char comm[BW_COMM_LEN];
	struct holder_rec holder;
	/*
	 * With the holder: how the process that took the port ended
	 * (holder_exit, for holder.tgid) and how its parent at that moment
	 * ended (parent_exit, for holder.ppid), where lineage_exit() saw it;
	 * exit_ns 0 when it runs still or was not seen.
	 */
	struct lineage_val holder_exit;
	struct lineage_val parent_exit;
	/*
	 * argv, NUL-separated: the whole of it when args_total fits here
	 * (args_len == args_total), else its head and its tail.
	 */
	char args[BW_ARGS_LEN];
};

/* ---- incidents: records for ports with an open incident only ---------- */

/* How many ports may have an open incident at once (user space caps it). */
#define BW_MAX_INCIDENTS 1024
/* How many processes holding such ports are watched for signals. */
#define BW_MAX_INCIDENT_HOLDERS 4096

/* What an incident_event says. */
enum bw_incident_kind {
	BW_INCIDENT_RELEASED = 1,  /* the registry's TCP listener closed */
	BW_INCIDENT_SIGNAL = 2,    /* a holder was sent a stop signal */
	BW_INCIDENT_RECOVERED = 3, /* someone bound (UDP) / listened (TCP) on the port */
	BW_INCIDENT_SHARED = 4,    /* a SO_REUSEPORT socket joined another process's port */
};

/* One port_shared record per (port, pair of processes) this often; the
 * rest are counted in the next one (incident_event.repeats). */
#define BW_SHARED_INTERVAL_NS (60ULL * 1000000000ULL)
/* How many (port, pair) rate entries the kernel keeps (LRU). */
#define BW_SHARED_PAIRS 4096
/* At most this many port_shared records per port per BW_SHARED_INTERVAL_NS,
 * whatever the pairs: a user forking joiners (each a new pair) cannot
 * flood; the joins past it are counted in their pair's next record. */
#define BW_SHARED_PORT_BURST 8

/* A port's port_shared budget: records written in the current window. */
struct shared_budget {
	__u64 start_ns;
	__u32 count;
	__u32 pad;
};

/* Key of the port_shared rate limit: a port and the pair of processes. */
struct shared_key {
	struct holder_key port;
	__u32 holder; /* the registry's holder's tgid */
	__u32 joiner; /* the new socket's tgid */
};

struct shared_val {
	__u64 last_ns; /* when the last record for the key was written */
	__u32 repeats; /* joins since, not recorded */
	__u32 pad;
};

/*
 * One incident record. The actor is the current task: the one that closed
 * the socket (released), sent the signal (signal), or took the port
 * (recovered).
 */
struct incident_event {
	__u64 ts_ns;    /* CLOCK_BOOTTIME */
	__u64 start_ns; /* actor's process start, CLOCK_BOOTTIME */
	__u32 kind;     /* enum bw_incident_kind */
	__u32 netns;
	__u32 pid; /* actor's thread group */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 exit_code; /* released: the actor's task->exit_code, when exiting */
	__s32 sig;       /* signal: the signal */
	__s32 result;    /* signal: the kernel's TRACE_SIGNAL_* result */
	__u32 target;    /* signal: the target task's pid */
	__u32 repeats;   /* shared: joins of this pair not recorded since the last record */
	__u32 queued;    /* released (TCP): connections in the listener's accept queue the program never accepted: the kernel resets them */
	__u16 port;
	__u16 family;
	__u8 proto;   /* holder_key.proto: IPPROTO_TCP or IPPROTO_UDP */
	__u8 syscall; /* recovered: enum bw_syscall */
	__u8 exiting; /* released: the actor is exiting (PF_EXITING) */
	__u8 has_holder;
	__u16 args_len;
	__u8 probe; /* recovered: bindwatch's own check took the port (SO_MARK), and lets go at once */
	__u8 may_migrate; /* released (TCP): the kernel may move the queue to another listener of the SO_REUSEPORT group instead of resetting it */
	__u8 addr[16];
	char comm[BW_COMM_LEN];        /* actor's */
	char target_comm[BW_COMM_LEN]; /* signal: the target's */
	struct holder_rec holder;      /* released, shared: the registry's record of the holder */
	char args[BW_ARGS_LEN];        /* actor's argv, NUL-separated */
};

#endif /* BINDWATCH_H */
