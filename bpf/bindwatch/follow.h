// SPDX-License-Identifier: GPL-2.0
/*
 * Process tree following (--follow-children, bindwatch run) and the end of
 * processes in the lineage map.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/* ---- process tree following (--pid --follow-children, bindwatch run) ---- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(follow_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 one = 1;

	/* New threads share the tgid: nothing to add. */
	if (ptgid == ctgid || !bpf_map_lookup_elem(&traced_pids, &ptgid))
		return 0;
	/* A full map (a tree of more than its entries alive at once, which
	 * the traced program controls) loses the child: counted, so that
	 * the stop record says so. */
	if (bpf_map_update_elem(&traced_pids, &ctgid, &one, BPF_ANY))
		count_stat(STAT_UNFOLLOWED);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(follow_exit, struct task_struct *task)
{
	__u32 tgid = task->tgid;

	/* Forget a process when its leader exits, so a recycled pid is not traced. */
	if (task->pid == tgid)
		bpf_map_delete_elem(&traced_pids, &tgid);
	return 0;
}

/* A process in the lineage map has ended: note when and how (see lineage). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(lineage_exit, struct task_struct *task)
{
	__u32 tgid = task->tgid;
	struct lineage_val *v = bpf_map_lookup_elem(&lineage, &tgid);

	if (!v || v->exit_ns)
		return 0;
	/* Only the process's last thread: do_exit() has counted it off signal->live. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (v->start_ns != BPF_CORE_READ(task, group_leader, start_boottime))
		return 0;
	v->exit_code = BPF_CORE_READ(task, exit_code);
	v->exit_ns = bpf_ktime_get_boot_ns();
	return 0;
}
