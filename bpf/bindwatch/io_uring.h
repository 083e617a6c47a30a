// SPDX-License-Identifier: GPL-2.0
/*
 * io_uring's IORING_OP_BIND and IORING_OP_LISTEN (every backend).
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

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
			record_listener(sk, false);
			note_taken(sk, IPPROTO_TCP, BW_SYSCALL_LISTEN);
			return 0;
		}
		if (res > 0 || !errno_wanted(-res) || !pid_wanted(bpf_get_current_pid_tgid() >> 32))
			return 0;
		return report_sock_failure(sk, NULL, BW_SYSCALL_LISTEN, BW_HOOK_IOURING_LISTEN, -res);
	}
	if (res == 0) {
		if (record_holders || incidents_open()) {
			record_bound(sk, false);
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
