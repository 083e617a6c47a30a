// SPDX-License-Identifier: GPL-2.0
/*
 * bindwatch: report every failed bind()/listen() with what the kernel knew at
 * that moment, through one ring buffer.
 *
 * One object holds every backend's programs (tracepoint, kprobe, fentry);
 * the Go loader deletes the programs the chosen backend does not use before
 * loading. All backends funnel into fold_or_report() and emit_failure(), so
 * the same failure yields the same event whichever hook saw it.
 *
 * The code is in bindwatch/, one section file per concern, included below
 * in the order their uses need: common.h holds what every section shares;
 * a new backend's hooks go in a file of their own.
 */
#include "vmlinux.h"
#include "arch.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "uapi.h"
#include "bindwatch.h"

/* Probe-read helpers and tracing programs need a GPL-compatible licence. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "bindwatch/common.h"
#include "bindwatch/folds.h"
#include "bindwatch/holders.h"
#include "bindwatch/filters.h"
#include "bindwatch/failure.h"
#include "bindwatch/incidents.h"
#include "bindwatch/args.h"
#include "bindwatch/tracepoint.h"
#include "bindwatch/kfunc.h"
#include "bindwatch/implicit.h"
#include "bindwatch/io_uring.h"
#include "bindwatch/follow.h"
#include "bindwatch/seed.h"
#include "bindwatch/impact.h"
