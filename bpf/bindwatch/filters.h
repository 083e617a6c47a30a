// SPDX-License-Identifier: GPL-2.0
/*
 * The filters every failure passes (--errno, --pid, --port, --comm,
 * --netns), and the processes --pid and bindwatch run trace.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/* Processes to trace when filter_pids is set (--pid, bindwatch run). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} traced_pids SEC(".maps");

static __always_inline bool errno_wanted(__u32 err)
{
	switch (err) {
	case EADDRINUSE:
		return errno_mask & BW_ERR_EADDRINUSE;
	case EADDRNOTAVAIL:
		return errno_mask & BW_ERR_EADDRNOTAVAIL;
	case EACCES:
		return errno_mask & BW_ERR_EACCES;
	case EINVAL:
		return errno_mask & BW_ERR_EINVAL;
	case EAGAIN:
		return errno_mask & BW_ERR_EAGAIN;
	}
	return false;
}

static __always_inline bool pid_wanted(__u32 tgid)
{
	if (!filter_pids)
		return true;
	return bpf_map_lookup_elem(&traced_pids, &tgid) != NULL;
}

static __always_inline bool port_wanted(__u16 port)
{
	if (!n_port_ranges)
		return true;
	for (int i = 0; i < BW_MAX_PORT_RANGES; i++) {
		if (i >= n_port_ranges)
			break;
		if (port >= port_ranges[i].lo && port <= port_ranges[i].hi)
			return true;
	}
	return false;
}

static __always_inline bool comm_wanted(void)
{
	char comm[BW_COMM_LEN];

	if (!filter_comm_len)
		return true;
	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < BW_COMM_LEN; i++) {
		if (i >= filter_comm_len)
			return comm[i] == 0 || i == BW_COMM_LEN - 1;
		if (comm[i] != filter_comm[i])
			return false;
	}
	return true;
}

/*
 * --netns: failures of tasks in one network namespace. The task's, not the
 * socket's: a socket is made in its creator's namespace, and the filter
 * runs before the socket is looked up (a socket passed in from another
 * namespace is reported by where its user is).
 */
static __always_inline bool netns_wanted(void)
{
	if (!filter_netns)
		return true;
	return BPF_CORE_READ(current_task(), nsproxy, net_ns, ns.inum) == filter_netns;
}
