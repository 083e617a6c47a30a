// SPDX-License-Identifier: GPL-2.0
/*
 * The tracepoint backend's bind() and listen() hooks.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

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
 * the task's saved user registers. bpf_task_pt_regs() gives them typed, so
 * they are plain loads (PT_REGS_PARM*_SYSCALL; on arm64 the first is a
 * probe read of orig_x0, which libbpf's flavour of pt_regs reads). */
static __always_inline void syscall_args(struct call_args *a)
{
	struct pt_regs *regs;

	if (!args_in_regs)
		return;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	a->arg[0] = PT_REGS_PARM1_SYSCALL(regs);
	a->arg[1] = PT_REGS_PARM2_SYSCALL(regs);
	a->arg[2] = PT_REGS_PARM3_SYSCALL(regs);
}

/* The socket behind the call's fd (its first argument), at its exit: typed
 * for BW_READ when direct_reads. */
static __always_inline struct sock *call_sock(struct call_args *a)
{
	syscall_args(a);
	return sock_from_fd(a->arg[0], direct_reads);
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
			record_bound(sk, direct_reads);
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
	now = fold_clock();
	if (!fold_or_report(&key, -ret, BW_SYSCALL_BIND, req.port, fd, now))
		return 0;
	sk = sock_from_fd(fd, false);
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
			record_listener(sk, direct_reads);
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
