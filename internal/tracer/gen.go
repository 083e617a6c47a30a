// Package tracer loads bindwatch's BPF programs, attaches the chosen backend
// and decodes the failure records from the ring buffer into events: nothing
// above it sees the kernel's generated types.
//
// The BPF object (bpf/bindwatch.bpf.c) holds every backend's programs; a
// Backend names the ones it attaches, and the rest are deleted from the
// spec before loading, so one kernel never verifies programs it cannot run.
package tracer

// One BPF object per architecture: the tracepoint backend reads syscall
// arguments from the task's saved registers, whose layout is the
// architecture's (bpf2go defines __TARGET_ARCH_x86 for -target amd64). Each
// generated file is built for its GOARCH only (-tags linux,GOARCH; bpf2go
// alone would tag amd64's for 386 too), and arch_unsupported.go stops a
// build for any other. Another architecture adds its line here, its name
// there, and its saved registers to bpf/arch.h (which says why vmlinux.h,
// generated on x86-64, serves arm64 too).
//go:generate go tool bpf2go -tags linux,amd64 -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64 -type event -type holder_key -type holder_rec -type lineage_val -type fold_key -type fold_val -type stats -type bw_hook -type bw_syscall -type bw_sock_flag -type bw_errno_bit -type bw_args_len -type bw_mark -type call_args -type incident_event -type bw_incident_kind bindwatch ../../bpf/bindwatch.bpf.c -- -I../.. -I../../bpf
//go:generate go tool bpf2go -tags linux,arm64 -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target arm64 -type event -type holder_key -type holder_rec -type lineage_val -type fold_key -type fold_val -type stats -type bw_hook -type bw_syscall -type bw_sock_flag -type bw_errno_bit -type bw_args_len -type bw_mark -type call_args -type incident_event -type bw_incident_kind bindwatch ../../bpf/bindwatch.bpf.c -- -I../.. -I../../bpf
