/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel types bindwatch's programs need that differ by architecture
 * and that vmlinux.h lacks for the target being built.
 *
 * vmlinux.h is one header for every architecture: it is generated from an
 * x86-64 kernel's BTF (`make vmlinux`), and every type bindwatch reads
 * through it (sock, task_struct, files, …) is reached by CO-RE: the
 * loader relocates each field access by name against the running kernel's
 * own BTF, so offsets that differ on arm64 are fixed at load time. What
 * CO-RE cannot supply is a type the header does not declare at all, and
 * the only such types are the saved user registers that bpf_tracing.h's
 * PT_REGS_* macros read (kprobe arguments, and syscall arguments from
 * bpf_task_pt_regs() in the tracepoint backend):
 *
 *  - x86-64: struct pt_regs, in vmlinux.h.
 *  - arm64: struct user_pt_regs (its first registers; orig_x0, the
 *    syscall's first argument, comes from libbpf's own struct
 *    pt_regs___arm64 flavour). Declared here with the layout of its UAPI
 *    definition (arch/arm64/include/uapi/asm/ptrace.h), which the kernel
 *    never changes, and preserve_access_index, so that reads are still
 *    relocated against the kernel's BTF, which has the type.
 *
 * Another architecture adds its registers here, a go:generate line in
 * internal/tracer/gen.go, and is then tested in its kernel (vmtest).
 */
#ifndef BINDWATCH_ARCH_H
#define BINDWATCH_ARCH_H

#if defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
} __attribute__((preserve_access_index));
/* A syscall's sixth argument (libbpf 1.1's bpf_tracing.h stops at the fifth). */
#define BW_SYSCALL_PARM6_CORE(x) BPF_CORE_READ((struct user_pt_regs *)(x), regs[5])
#elif defined(__TARGET_ARCH_x86)
#define BW_SYSCALL_PARM6_CORE(x) BPF_CORE_READ((struct pt_regs *)(x), r9)
#else
#error "bindwatch's BPF programs are built for x86 and arm64 only (see bpf/arch.h)"
#endif

#endif /* BINDWATCH_ARCH_H */
