/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel constants bindwatch's BPF programs use that vmlinux.h cannot
 * carry: they are #defines in the kernel's headers, not in BTF. Enum
 * constants (IPPROTO_*, TCP_LISTEN, TCP_CLOSE, …) come from vmlinux.h.
 */
#ifndef BINDWATCH_UAPI_H
#define BINDWATCH_UAPI_H

/* include/linux/socket.h */
#define AF_INET 2
#define AF_INET6 10

/* include/uapi/asm-generic/errno-base.h, errno.h */
#define E2BIG 7
#define EAGAIN 11
#define EACCES 13
#define EEXIST 17
#define EINVAL 22
#define EADDRINUSE 98
#define EADDRNOTAVAIL 99

/* include/uapi/linux/stat.h */
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* include/linux/sched.h */
#define PF_EXITING 0x00000004

#endif /* BINDWATCH_UAPI_H */
