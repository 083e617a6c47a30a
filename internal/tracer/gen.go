// Package tracer loads bindwatch's BPF programs, attaches the chosen backend
// and decodes the failure records from the ring buffer into events: nothing
// above it sees the kernel's generated types.
//
// The BPF object (bpf/bindwatch.bpf.c) holds every backend's programs; a
// Backend names the ones it attaches, and the rest are deleted from the
// spec before loading, so one kernel never verifies programs it cannot run.
package tracer

//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type event -type holder_key -type holder_rec -type fold_key -type fold_val -type stats -type bw_hook -type bw_syscall -type bw_sock_flag -type bw_errno_bit -type bw_args_len -type bw_mark -type call_args -type incident_event -type bw_incident_kind Bindwatch ../../bpf/bindwatch.bpf.c -- -I../.. -I../../bpf
