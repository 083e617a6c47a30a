// Package host is bindwatch's plumbing to the machine it runs on: running
// a function inside another network namespace on a locked thread, opening a
// namespace and checking it is the one meant, reading /proc/PID/stat, the
// boot clock the kernel stamps events with, and where tracefs is. It
// imports nothing of bindwatch above it, so every package can use it.
package host
