package resolve

// The iterators (bpf/iters.bpf.c) read no registers: one generic
// little-endian object serves every such architecture.
//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -type socket_owner -type timewait_socket -type inode_filter Iters ../../bpf/iters.bpf.c -- -I../.. -I../../bpf
