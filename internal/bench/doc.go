// Package bench measures what bindwatch costs the traced host: the time of
// a bind() call untraced and traced, on the failing path (a storm of
// EADDRINUSE) and the succeeding path, and of what the incident programs
// watch — loopback connect/accept/close churn (sock:inet_sock_set_state)
// and a signal storm (signal:signal_generate) — in one run, with the whole
// pipeline consuming. Run it with `make bench`; it holds no code, only
// benchmarks.
package bench
