// Package bench measures what bindwatch costs the traced host: the time of
// a bind() call untraced and traced, on the failing path (a storm of
// EADDRINUSE) and the succeeding path, in one run, with the whole pipeline
// consuming. Run it with `make bench`; it holds no code, only benchmarks.
package bench
