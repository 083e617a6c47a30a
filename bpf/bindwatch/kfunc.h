// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel-function backends (fentry, kprobe): inet_bind, inet6_bind,
 * inet_listen.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/* ---- kernel-function backends: inet_bind, inet6_bind, inet_listen -------- */

/*
 * inet_bind/inet6_bind are the bind op of every AF_INET/AF_INET6 socket and
 * inet_listen the listen op of TCP ones, so these hooks also see binds that
 * never pass through the bind() syscall (io_uring's IORING_OP_BIND). Their
 * uaddr is the kernel's copy of the request (move_addr_to_kernel).
 */
static __always_inline int bind_returned(struct socket *sock, void *uaddr, int addr_len, int ret, __u8 hook,
					 bool direct)
{
	struct bind_req req = {};
	struct sock *sk;

	if (ret == 0) {
		if ((record_holders || incidents_open()) && (sk = BW_READ(direct, sock, sk))) {
			record_bound(sk, direct);
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

static __always_inline int listen_returned(struct socket *sock, int ret, bool direct)
{
	struct sock *sk = BW_READ(direct, sock, sk);

	if (!sk)
		return 0;
	if (ret == 0) {
		record_listener(sk, direct);
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
	return bind_returned(sock, uaddr, addr_len, ret, BW_HOOK_INET_BIND, direct_reads);
}

SEC("fexit/inet6_bind")
int BPF_PROG(fexit_inet6_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return bind_returned(sock, uaddr, addr_len, ret, BW_HOOK_INET6_BIND, direct_reads);
}

SEC("fexit/inet_listen")
int BPF_PROG(fexit_inet_listen, struct socket *sock, int backlog, int ret)
{
	return listen_returned(sock, ret, direct_reads);
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
	return bind_returned((struct socket *)a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_HOOK_INET_BIND, false);
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
	return bind_returned((struct socket *)a.arg[0], (void *)a.arg[1], a.arg[2], ret, BW_HOOK_INET6_BIND, false);
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
	return listen_returned((struct socket *)a.arg[0], ret, false);
}
