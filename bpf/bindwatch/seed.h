// SPDX-License-Identifier: GPL-2.0
/*
 * Seeding the holder registry at start from the sockets that already exist.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

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
	proto = holder_proto(sk, false);
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* What listen()/bind() would have recorded: TCP listeners, and UDP
	 * sockets bound to a port but not connected (servers, not clients). */
	if ((proto == IPPROTO_TCP && state == TCP_LISTEN) ||
	    (proto == IPPROTO_UDP && state == TCP_CLOSE && BPF_CORE_READ(sk, __sk_common.skc_num)))
		record_holder_of(task, sk, proto, true, false);
	return 0;
}
