// SPDX-License-Identifier: GPL-2.0
/*
 * Folding: repeats of one failure counted in the kernel (two generations of
 * the fold table) instead of reported, and the pause that freezes the counts.
 *
 * A section of bindwatch.bpf.c (one object), which includes it after the
 * sections it uses; not compiled on its own.
 */

/*
 * The fold table: per (process, errno, port, syscall, socket), how many
 * failures were counted instead of reported. Two generations of it,
 * folds0 and folds1: the programs write the one fold_gen names, and Go
 * flips fold_gen every tick, then — a tick later, once no program that
 * read the old fold_gen can still be running (programs run for
 * microseconds, under RCU: for a shorter rest Go waits for a grace period
 * with membarrier) — reads and empties the other one with batch
 * lookup-and-delete. So user space never reads a map the kernel is
 * writing: iterating a hash map while programs insert and delete can
 * abort, and deleting an entry a program is incrementing loses the
 * increment. Every folded failure is harvested exactly once.
 *
 * A plain hash, not LRU: an LRU map evicts entries, and their counts with
 * them, behind user space's back. A full table makes nothing fail: a
 * failure that finds no room for its key is reported on its own — or, the
 * ring buffer full too, counted as lost — and counted in stats.fold_full.
 * A failure that finds the ring buffer full is folded (fold_undelivered):
 * the entry names who failed, so its repeats record reports it.
 *
 * Size, from a measurement on 6.18 (TestHarvestFullFoldTable,
 * BenchmarkHarvestFolds; a 5 s storm as uid 65534 over 40,000 keys):
 * preallocated, an entry costs 120 bytes of kernel memory, 1.9 MiB per
 * generation of 16,384; harvesting a full generation takes ~11 ms, once a
 * tick. The storm fills a generation within its first tick whatever the
 * size — 1.36 M failures: 587 k folded, 769 k lost, all counted — so a
 * bigger table only buys memory; a host's own services fold a few keys a
 * second.
 */
#define BW_FOLD_ENTRIES 16384

struct fold_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BW_FOLD_ENTRIES);
	__type(key, struct fold_key);
	__type(value, struct fold_val);
};

struct fold_map folds0 SEC(".maps");
struct fold_map folds1 SEC(".maps");

/* Which fold map the programs write: folds0 when even. Go flips it. */
volatile __u32 fold_gen;

/*
 * Set by Go when tracing stops: from then on no failure is counted, so the
 * counters hold still at once, while detaching the programs (which waits
 * for RCU grace periods: ~0.1-0.3 s) goes on beside the last reports.
 */
volatile __u8 paused;

/*
 * The fold clock. Every failure of a storm reads the time to learn whether
 * its key's window is still open, and bpf_ktime_get_boot_ns() reads the
 * TSC: ~35 ns in a VM on 6.18, a fifth of what tracing a folded failure
 * cost (perf, README "Speed"). Jiffies cost a load. Where Go knows the
 * tick rate (CONFIG_HZ) it sets fold_jiffies, the window in ticks, and
 * windows are timed in jiffies, to within a tick (1-10 ms) of fold_ns;
 * else (0) on the boot clock, and the verifier prunes the other branch.
 * Only windows are timed so: an event's time and a fold's last_emit_ns
 * are on the boot clock, read when a failure is reported.
 */
volatile const __u64 fold_jiffies;

static __always_inline __u64 fold_clock(void)
{
	return fold_jiffies ? bpf_jiffies64() : bpf_ktime_get_boot_ns();
}

/* The fold window's length on the fold clock. */
static __always_inline __u64 fold_window(void)
{
	return fold_jiffies ? fold_jiffies : fold_ns;
}

static __always_inline void *fold_map_of(__u32 gen)
{
	return gen & 1 ? (void *)&folds1 : (void *)&folds0;
}

/*
 * Key's entry in generation gen's table. Each call names its map as a
 * constant, so the verifier inlines the lookup (a map chosen at run time,
 * as fold_map_of() gives, costs a storm's every failure a helper call).
 * clang 19 keeps the two calls apart without the barrier too; it is there
 * so that a compiler that sinks them into one call on a selected pointer
 * cannot undo the inlining unseen.
 */
static __always_inline struct fold_val *fold_lookup(__u32 gen, struct fold_key *key)
{
	if (gen & 1)
		return bpf_map_lookup_elem(&folds1, key);
	asm volatile("" ::: "memory");
	return bpf_map_lookup_elem(&folds0, key);
}

/*
 * Folding: count this failure into the fold table instead of reporting it?
 * Yes when its key reported a failure less than fold_ns ago. A key found
 * only in the previous generation carries its window over into the current
 * one, so a flip neither splits a storm nor reports it twice.
 */
static __always_inline bool fold(struct fold_key *key, __u64 now)
{
	__u32 gen = fold_gen;
	struct fold_val *v, *prev, carry;

	if (!fold_ns)
		return false;
	v = fold_lookup(gen, key);
	if (v) {
		if (now - v->window_start < fold_window()) {
			__sync_fetch_and_add(&v->folded, 1);
			return true;
		}
		/* reported: a new window starts */
		v->window_start = now;
		v->last_emit_ns = bpf_ktime_get_boot_ns();
		return false;
	}
	prev = fold_lookup(gen + 1, key);
	if (!prev || now - prev->window_start >= fold_window())
		return false;
	carry = *prev;
	carry.folded = 1;
	/* Full (or just made by another CPU): this one is reported instead. */
	return bpf_map_update_elem(fold_map_of(gen), key, &carry, BPF_NOEXIST) == 0;
}

/*
 * Make key's entry in the current generation, with folded failures so far:
 * its window starts now (the fold clock's), and emitted_ns (the boot
 * clock's) is when its failure was reported.
 * Returns 0, -EEXIST (another CPU made it, or its window just restarted:
 * see fold()) or -E2BIG (no room: counted in stats.fold_full).
 */
static __always_inline long fold_start(void *map, struct fold_key *key, __u64 now, __u64 emitted_ns, __u16 protocol,
				       __u64 folded)
{
	struct fold_val v = {
		.folded = folded, .last_emit_ns = emitted_ns, .window_start = now, .protocol = protocol
	};
	long err;

	bpf_get_current_comm(v.comm, sizeof(v.comm));
	err = bpf_map_update_elem(map, key, &v, BPF_NOEXIST);
	if (err == -E2BIG)
		count_stat(STAT_FOLD_FULL);
	return err;
}

/*
 * The ring buffer is full: fold the failure instead — the fold names who
 * failed, so its repeats record reports it. False when it cannot be
 * folded either (folding off, or the fold table full): it is lost.
 */
static __always_inline bool fold_undelivered(struct fold_key *key, __u64 now, __u16 protocol)
{
	void *map = fold_map_of(fold_gen);
	struct fold_val *v;
	long err;

	if (!fold_ns)
		return false;
	v = bpf_map_lookup_elem(map, key);
	if (!v) {
		err = fold_start(map, key, now, bpf_ktime_get_boot_ns(), protocol, 1);
		if (err == 0)
			return true;
		if (err != -EEXIST || !(v = bpf_map_lookup_elem(map, key)))
			return false;
	}
	__sync_fetch_and_add(&v->folded, 1);
	return true;
}
