package resolve

//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -type socket_owner -type timewait_socket Holders ../../bpf/holders.bpf.c -- -I../.. -I../../bpf
