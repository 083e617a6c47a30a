// SPDX-License-Identifier: GPL-2.0
/*
 * Arguments stashed at a call's entry for hooks that see only its return
 * (kretprobes; syscall exit tracepoints before 5.15).
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

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
