package iterload

// The iterators (bpf/iters.bpf.c) read no registers: one generic
// little-endian object serves every such architecture. The ident is
// lowercase so that the generated types stay inside this package.
//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -type socket_owner -type timewait_socket -type inode_filter iters ../../bpf/iters.bpf.c -- -I../.. -I../../bpf
