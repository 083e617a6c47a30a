// Package corpus is a corpus of real restarts: the tests in this package
// start real servers the way their users start them — nginx as packaged
// (daemon on, master and workers, a pid file), redis-server --daemonize
// yes, memcached -d, haproxy reloaded with -sf and -x, python3 -m
// http.server, a rolling restart of two python scripts, a prefork server,
// a double-fork daemon, socat on both stacks, systemd-socket-activate, a Go
// net/http server and a process whose own outgoing connection took its
// port — play a restart or a second start, and check what the real
// bindwatch binary says about it: the cause, confidence, diagnosis and hint
// of each bind_failure, and, where there is an incident, the figures of
// `bindwatch report --format json`.
//
// Each scenario starts its own bindwatch (--format json, --port limited to
// the scenario's ports) and its own daemons, in a temporary directory with
// their own configuration, pid and log files, on a free port, in a cgroup
// of their own that is emptied (every process killed) when the scenario
// ends: nothing is left running.
//
// The package has no code besides its tests. The programs come from Debian
// (scripts/test-deps.sh installs them); a scenario whose program is
// missing skips, and fails under BINDWATCH_REQUIRE_BPF=1 as CI runs it.
// TestGoServer and TestConnectFirst need no package and no python: they
// also run in the kernel matrix's bare guests.
package corpus
