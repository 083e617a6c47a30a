// SPDX-License-Identifier: GPL-2.0
/*
 * Implicit binds, in the tracepoint and the kernel-function backends: the
 * failures of connect(), sendto() and sendmsg() that an autobind caused.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

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
	return report_implicit(sock_from_fd(fd, false), &dst, syscall, hook, -ret, fd);
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
