package diagnose

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

func TestDiagnose(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	on, off := boolPtr(true), boolPtr(false)
	nginx := events.Process{PID: 42, PPID: 7, UID: 33, User: "www-data", Comm: "nginx", Exe: "/usr/sbin/nginx",
		StartTime: now.Add(-3 * time.Hour)}
	orphan := nginx
	orphan.PPID = 1
	listener := func(addr string, p ...events.Process) events.Holder {
		return events.Holder{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: addr, Port: 8080, Inode: 99,
			UID: 33, ReuseAddr: on, ReusePort: off, Processes: p}
	}
	timeWait := func(reuse *bool, left int64) events.Holder {
		return events.Holder{Source: events.SeenLive, Proto: "tcp", State: "TIME_WAIT", Addr: "127.0.0.1", Port: 8080,
			ReuseAddr: reuse, ReusePort: off, RemainingMS: left, Processes: []events.Process{}}
	}
	base := func(mod func(f *events.Failure)) *events.Failure {
		f := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: 8080,
			Process: events.Process{PID: 500, UID: 1000, Comm: "myapp", Exe: "/opt/myapp", Netns: 4026531840}}
		mod(f)
		return f
	}
	cases := []struct {
		name          string
		f             *events.Failure
		facts         Facts
		cause         string
		confidence    string // checked when set
		wantDiagnosis []string
		wantHint      []string
		notDiagnosis  []string
		notHint       []string
	}{
		{
			name:          "live listener",
			cause:         events.CausePortInUse,
			f:             base(func(f *events.Failure) { f.Holders = []events.Holder{listener("0.0.0.0", nginx)} }),
			wantDiagnosis: []string{"Port 8080/tcp is held by nginx (pid 42, user www-data), listening on 0.0.0.0:8080, running for 3h0m."},
			wantHint:      []string{"kill 42", "another port"},
		},
		{
			name:  "bound time known from the kernel",
			cause: events.CausePortInUse,
			f: base(func(f *events.Failure) {
				h := listener("0.0.0.0", nginx)
				h.Since = now.Add(-2500 * time.Millisecond)
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"bound 2.5s ago"},
		},
		{
			name:  "bound a moment ago: milliseconds count in a restart race",
			cause: events.CausePortInUse,
			f: base(func(f *events.Failure) {
				h := listener("0.0.0.0", nginx)
				h.Since = now.Add(-7 * time.Millisecond)
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"bound 7ms ago"},
		},
		{
			name:  "pre-forked workers",
			cause: events.CausePortInUse,
			f: base(func(f *events.Failure) {
				w1, w2 := nginx, nginx
				w1.PID, w2.PID = 43, 44
				f.Holders = []events.Holder{listener("0.0.0.0", nginx, w1, w2)}
			}),
			wantDiagnosis: []string{"nginx (pids 42, 43, 44)"},
			wantHint:      []string{"kill 42 43 44"},
		},
		{
			name:       "a second copy of a daemon under init is already running, not a leftover",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "/usr/sbin/nginx", "nginx"
				f.Holders = []events.Holder{listener("0.0.0.0", orphan)}
			}),
			wantDiagnosis: []string{"held by nginx (pid 42)", "runs the same program as this process (/usr/sbin/nginx)", "second copy"},
			wantHint:      []string{"nginx (pid 42) has been serving this port since 2025-06-01T09:00:00Z", "`nginx -s reload`", "do not start a second copy"},
			notHint:       []string{"kill 42", "leftover"},
		},
		{
			name:       "a systemd service's main process (parent 1) is already running: reload through its unit",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm, f.Process.Cgroup = "/usr/sbin/nginx", "nginx", "/user.slice/user-0.slice/session-3.scope"
				svc := orphan
				svc.Cgroup, svc.Unit = "/system.slice/nginx.service", "nginx.service" // Unit: as enrich.UnitOf names it
				f.Holders = []events.Holder{listener("0.0.0.0", svc)}
			}),
			wantDiagnosis: []string{"held by nginx (pid 42)"},
			wantHint:      []string{"systemctl reload nginx.service", "systemctl stop nginx.service"},
			notHint:       []string{"kill 42"},
		},
		{
			name:       "a daemonized master: its launcher took the port and exited 0 at once",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "/usr/sbin/nginx", "nginx"
				master, worker := orphan, orphan
				worker.PID, worker.PPID = 43, 42
				h := listener("0.0.0.0", master, worker)
				h.BoundBy = &events.Process{PID: 41, PPID: 7, Comm: "nginx", StartTime: now.Add(-3*time.Hour - time.Second),
					Exit: &events.Exit{Time: master.StartTime.Add(2 * time.Millisecond), Code: intPtr(0)}}
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"held by nginx (pid 42)", "It is the running daemon", "inherited the socket from nginx (pid 41), which listened on it and exited with status 0 right after starting it"},
			wantHint:      []string{"nginx (pid 42) has been serving this port"},
			notHint:       []string{"kill"},
		},
		{
			name:       "prefork workers whose master was killed are a leftover",
			cause:      events.CauseLeftover,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "/usr/bin/python3.11", "python3"
				f.Process.Cmdline = []string{"python3", "server.py"}
				w1 := events.Process{PID: 43, PPID: 1, Comm: "python3", Exe: "/usr/bin/python3.11", Cmdline: []string{"python3", "server.py"}, StartTime: now.Add(-time.Hour)}
				w2 := w1
				w2.PID = 44
				h := listener("0.0.0.0", w1, w2)
				h.BoundBy = &events.Process{PID: 42, PPID: 7, Comm: "python3", StartTime: now.Add(-time.Hour - time.Second),
					Exit: &events.Exit{Time: now.Add(-time.Minute), Signal: "SIGKILL"}}
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"a leftover of a previous instance", "python3 (pids 43, 44), running for 1h0m, inherited the socket from python3 (pid 42), which listened on it and was killed by SIGKILL"},
			wantHint:      []string{"Stop it: kill 43 44", "close the listening socket in children", "KillMode=control-group"},
			notHint:       []string{"SOCK_CLOEXEC"},
		},
		{
			name:       "a child that exec'd another program after inheriting the socket: SOCK_CLOEXEC applies",
			cause:      events.CauseLeftover,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				worker := nginx
				worker.PID, worker.PPID, worker.Comm, worker.Exe = 43, 900, "worker", "/opt/worker"
				h := listener("0.0.0.0", worker)
				h.BoundBy = &events.Process{PID: 42, PPID: 900, Comm: "myapp", StartTime: now.Add(-4 * time.Hour),
					Exit: &events.Exit{Time: now.Add(-time.Hour), Code: intPtr(1)}}
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"inherited the socket from myapp (pid 42), which listened on it and exited with status 1"},
			wantHint:      []string{"Stop it: kill 43", "SOCK_CLOEXEC"},
		},
		{
			name:       "UDP leftover: the process that bound the socket exited long after starting its child",
			cause:      events.CauseLeftover,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Proto = "udp"
				worker := nginx
				worker.PID, worker.PPID, worker.Comm, worker.Exe = 43, 900, "myapp", "/opt/myapp"
				h := listener("0.0.0.0", worker)
				h.Proto, h.State = "udp", "UNCONN"
				h.BoundBy = &events.Process{PID: 42, PPID: 900, Comm: "myapp", StartTime: now.Add(-4 * time.Hour),
					Exit: &events.Exit{Time: now.Add(-time.Hour), Code: intPtr(0)}}
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"Port 8080/udp is held by a leftover", "inherited the socket from myapp (pid 42), which bound it and exited (status 0) 2h0m after starting it"},
			wantHint:      []string{"Stop it: kill 43"},
		},
		{
			name:       "an exited listener whose end the kernel did not see is no evidence",
			cause:      events.CausePortInUse,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				worker := nginx
				worker.PID, worker.PPID, worker.Comm, worker.Exe = 43, 900, "worker", "/opt/worker"
				h := listener("0.0.0.0", worker)
				h.BoundBy = &events.Process{PID: 42, PPID: 900, Comm: "myapp"}
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"held by worker (pid 43"},
		},
		{
			name:       "a worker older than the exited listener did not inherit from it (a reload's old worker)",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "/usr/sbin/nginx", "nginx"
				h := listener("0.0.0.0", orphan)
				h.BoundBy = &events.Process{PID: 50, PPID: 42, Comm: "nginx", StartTime: now.Add(-time.Hour),
					Exit: &events.Exit{Time: now.Add(-time.Minute), Code: intPtr(0)}}
				f.Holders = []events.Holder{h}
			}),
			notDiagnosis: []string{"leftover"},
		},
		{
			name:       "its parent was killed after it listened: likely a leftover",
			cause:      events.CauseLeftover,
			confidence: events.ConfidenceLikely,
			f: base(func(f *events.Failure) {
				child := nginx
				child.Comm, child.Exe, child.PPID, child.OrigPPID = "myapp", "/opt/myapp", 900, 41
				child.OrigParentExit = &events.Exit{Time: now.Add(-time.Hour), Signal: "SIGKILL"}
				f.Holders = []events.Holder{listener("0.0.0.0", child)}
			}),
			wantDiagnosis: []string{"held by a leftover", "its parent then (pid 41) was killed by SIGKILL", "its parent is now pid 900", "may still be wanted"},
			wantHint:      []string{"If it should not run, stop it: kill 42"},
		},
		{
			name:       "its parent exited 0 right after starting it: it daemonized (redis --daemonize)",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				child := nginx
				child.Comm, child.Exe, child.PPID, child.OrigPPID = "myapp", "/opt/myapp", 1, 41
				child.OrigParentExit = &events.Exit{Time: child.StartTime.Add(time.Millisecond), Code: intPtr(0)}
				f.Holders = []events.Holder{listener("0.0.0.0", child)}
			}),
			wantDiagnosis: []string{"It is the running daemon", "it daemonized"},
			notHint:       []string{"kill"},
		},
		{
			name:  "two python scripts are two programs",
			cause: events.CausePortInUse,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm, f.Process.Cmdline = "/usr/bin/python3.11", "python3", []string{"python3", "app_v2.py"}
				v1 := orphan
				v1.Exe, v1.Comm, v1.Cmdline = "/usr/bin/python3.11", "python3", []string{"python3", "-u", "app_v1.py"}
				f.Holders = []events.Holder{listener("0.0.0.0", v1)}
			}),
			notDiagnosis: []string{"same program", "leftover"},
		},
		{
			name:       "python -m http.server twice is the same program",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm, f.Process.Cmdline = "/usr/bin/python3.11", "python3", []string{"python3", "-m", "http.server", "8080"}
				h := orphan
				h.Exe, h.Comm, h.Cmdline = "/usr/bin/python3.11", "python3", []string{"/usr/bin/python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"}
				f.Holders = []events.Holder{listener("0.0.0.0", h)}
			}),
			wantDiagnosis: []string{"same program as this process (python -m http.server)"},
		},
		{
			name:       "the same comm without an executable is only likely the same program",
			cause:      events.CauseAlreadyRunning,
			confidence: events.ConfidenceLikely,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "", "nginx"
				f.Holders = []events.Holder{listener("0.0.0.0", orphan)}
			}),
			wantDiagnosis: []string{"by its name only"},
		},
		{
			name:  "an interpreter's comm alone is no evidence of the same program",
			cause: events.CausePortInUse,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "", "python3"
				h := orphan
				h.Exe, h.Comm = "", "python3"
				f.Holders = []events.Holder{listener("0.0.0.0", h)}
			}),
		},
		{
			name:       "dual-stack beats the same program",
			cause:      events.CauseDualStack,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Process.Exe, f.Process.Comm = "/usr/bin/socat", "socat"
				h := listener("::", events.Process{PID: 42, PPID: 1, Comm: "socat", Exe: "/usr/bin/socat"})
				h.V6Only = off
				f.Holders = []events.Holder{h}
			}),
			wantHint: []string{"IPV6_V6ONLY=1"},
		},
		{
			name:       "a process binding 0.0.0.0 and a dual-stack [::] itself: the v6only fix",
			cause:      events.CauseSelfConflict,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Family, f.Addr, f.Socket.V6Only = "ipv6", "::", off
				f.Process.PID = 42
				f.Holders = []events.Holder{listener("0.0.0.0", nginx)}
			}),
			wantDiagnosis: []string{"this same process", "dual-stack"},
			wantHint:      []string{"IPV6_V6ONLY=1", "listen [::]:8080 ipv6only=on;"},
		},
		{
			name:       "its own outgoing connection took the port: ephemeral_port, not self_conflict",
			cause:      events.CauseEphemeralPort,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Port = 40000
				f.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "ESTABLISHED", Addr: "10.0.0.5", Port: 40000,
					PeerAddr: "10.0.0.9", PeerPort: 5432, Processes: []events.Process{f.Process}}}
			}),
			facts:    Facts{Ephemeral: EphemeralPorts{Lo: 32768, Hi: 60999}, OwnNetns: true},
			wantHint: []string{"sysctl -w net.ipv4.ip_local_reserved_ports=40000"},
		},
		{
			name:       "systemd-socket-activate holding the port",
			cause:      events.CauseSocketActivation,
			confidence: events.ConfidenceCertain,
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 77, PPID: 5, Comm: "systemd-socket-", Exe: "/usr/bin/systemd-socket-activate"})}
			}),
			wantDiagnosis: []string{"systemd-socket-activate listens on it"},
			wantHint:      []string{"pid 77", "LISTEN_FDS"},
		},
		{
			name:       "a manager told by its comm alone is likely",
			cause:      events.CauseDockerProxy,
			confidence: events.ConfidenceLikely,
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 77, PPID: 1, Comm: "docker-proxy", Exe: "/tmp/evil"})}
			}),
		},
		{
			name:  "a socket handed over by a live process is not a leftover",
			cause: events.CausePortInUse,
			f: base(func(f *events.Failure) {
				worker := nginx
				worker.PPID = 900
				f.Holders = []events.Holder{listener("0.0.0.0", worker)}
			}),
			wantDiagnosis: []string{"is held by nginx (pid 42, user www-data), listening"},
		},
		{
			name:          "a daemon under init running another program is not a leftover",
			cause:         events.CausePortInUse,
			f:             base(func(f *events.Failure) { f.Holders = []events.Holder{listener("0.0.0.0", orphan)} }),
			wantDiagnosis: []string{"is held by nginx (pid 42, user www-data), listening"},
		},
		{
			name:  "SO_REUSEPORT on the new socket only",
			cause: events.CauseReusePortMissing,
			f: base(func(f *events.Failure) {
				f.Socket.ReusePort = true
				f.Holders = []events.Holder{listener("0.0.0.0", nginx)}
			}),
			wantDiagnosis: []string{"without SO_REUSEPORT", "this socket set SO_REUSEPORT"},
			wantHint:      []string{"Set SO_REUSEPORT on the holder's socket"},
		},
		{
			name:  "SO_REUSEPORT on the holder only",
			cause: events.CauseReusePortMissing,
			f: base(func(f *events.Failure) {
				h := listener("0.0.0.0", nginx)
				h.ReusePort = on
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"with SO_REUSEPORT, but this socket did not set SO_REUSEPORT"},
			wantHint:      []string{"Set SO_REUSEPORT on this socket"},
		},
		{
			name:  "SO_REUSEPORT on both, different users",
			cause: events.CauseReusePortUser,
			f: base(func(f *events.Failure) {
				f.Socket.ReusePort = true
				h := listener("0.0.0.0", nginx)
				h.ReusePort = on
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"same effective uid: the holder's is 33, this process's 1000"},
			wantHint:      []string{"same user"},
		},
		{
			name:  "IPv4 against a dual-stack ::",
			cause: events.CauseDualStack,
			f: base(func(f *events.Failure) {
				h := listener("::", nginx)
				h.V6Only = off
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"0.0.0.0:8080/tcp conflicts with [::]:8080, held by nginx", "without IPV6_V6ONLY is dual-stack"},
			wantHint:      []string{"IPV6_V6ONLY=1", "ipv6only=on"},
		},
		{
			name:  "dual-stack :: against IPv4",
			cause: events.CauseDualStack,
			f: base(func(f *events.Failure) {
				f.Family, f.Addr, f.Socket.V6Only = "ipv6", "::", off
				f.Holders = []events.Holder{listener("127.0.0.1", nginx)}
			}),
			wantDiagnosis: []string{"this IPv6 socket was bound to :: without IPV6_V6ONLY"},
			wantHint:      []string{"IPV6_V6ONLY=1"},
		},
		{
			// An IPv6 address meets the dual-stack :: on its IPv6 side: the
			// wildcard overlap, not the IPv4 one.
			name:  "IPv6 ::1 against a dual-stack :: is a wildcard overlap",
			cause: events.CauseAddressOverlap,
			f: base(func(f *events.Failure) {
				f.Family, f.Addr = "ipv6", "::1"
				h := listener("::", nginx)
				h.V6Only = off
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"[::1]:8080/tcp conflicts with [::]:8080", "the holder's wildcard address covers every address"},
			notDiagnosis:  []string{"dual-stack"},
		},
		{
			name:          "wildcard against a specific TCP listener",
			cause:         events.CauseAddressOverlap,
			f:             base(func(f *events.Failure) { f.Holders = []events.Holder{listener("127.0.0.1", nginx)} }),
			wantDiagnosis: []string{"the wildcard address covers every address, including the holder's"},
			wantHint:      []string{"cannot both hold one TCP port", "whatever SO_REUSEADDR says"},
		},
		{
			name:  "specific against a wildcard UDP socket",
			cause: events.CauseAddressOverlap,
			f: base(func(f *events.Failure) {
				f.Proto, f.Addr = "udp", "127.0.0.1"
				h := listener("0.0.0.0", nginx)
				h.Proto, h.State, h.ReuseAddr = "udp", "UNCONN", off
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"the holder's wildcard address covers every address"},
			wantHint:      []string{"Set SO_REUSEADDR on both sockets (UDP"},
		},
		{
			name:  "TCP socket bound but not listening",
			cause: events.CauseBoundNotListening,
			f: base(func(f *events.Failure) {
				h := listener("0.0.0.0", nginx)
				h.State = "BOUND"
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"bound, not listening, to 0.0.0.0:8080", "this one: off, the holder: on"},
			wantHint:      []string{"Set SO_REUSEADDR on both sockets"},
		},
		{
			name:  "listen() after a shared SO_REUSEADDR bind",
			cause: events.CauseListenConflict,
			f: base(func(f *events.Failure) {
				f.Syscall, f.Socket.ReuseAddr = "listen", true
				f.Holders = []events.Holder{listener("0.0.0.0", nginx)}
			}),
			wantDiagnosis: []string{"listen() failed because nginx", "already listens on 0.0.0.0:8080", "only until one of them listens"},
			wantHint:      []string{"SO_REUSEPORT"},
		},
		{
			name:  "holder gone since the failure: the restart race",
			cause: events.CauseRestartRace,
			f: base(func(f *events.Failure) {
				h := listener("0.0.0.0", nginx)
				h.Source = events.Recorded
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"was held at the moment of the failure by nginx (pid 42", "has let go of it since (closed the socket, or exited): a restart race"},
			wantHint:      []string{"retry bind()"},
		},
		{
			name:  "the kernel saw the recorded holder exit: the restart race says how",
			cause: events.CauseRestartRace,
			f: base(func(f *events.Failure) {
				gone := nginx
				gone.Exit = &events.Exit{Time: now.Add(-time.Second), Signal: "SIGTERM"}
				h := listener("0.0.0.0", gone)
				h.Source = events.Recorded
				f.Holders = []events.Holder{h}
			}),
			wantDiagnosis: []string{"was held at the moment of the failure by nginx (pid 42", "which has exited since (it was killed by SIGTERM): a restart race"},
			wantHint:      []string{"retry bind()"},
		},
		{
			// The recorded holder held the port at the failure; the
			// TIME_WAIT sockets beside it did not block it then.
			name:  "an exited recorded holder outranks TIME_WAIT: the restart race",
			cause: events.CauseRestartRace,
			f: base(func(f *events.Failure) {
				gone := nginx
				gone.Exit = &events.Exit{Time: now.Add(-time.Second), Signal: "SIGTERM"}
				h := listener("0.0.0.0", gone)
				h.Source = events.Recorded
				f.Holders = []events.Holder{timeWait(on, 30_000), h}
				f.TimeWait = &events.TimeWait{Count: 1, MaxRemainingMS: 30_000}
			}),
			wantDiagnosis: []string{"which has exited since (it was killed by SIGTERM): a restart race"},
			notDiagnosis:  []string{"TIME_WAIT"},
		},
		{
			name:  "TIME_WAIT, neither side set SO_REUSEADDR",
			cause: events.CauseTimeWait,
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{timeWait(off, 42_000), timeWait(off, 10_000)}
				f.TimeWait = &events.TimeWait{Count: 5, MaxRemainingMS: 42_000}
			}),
			wantDiagnosis: []string{"Only 5 TIME_WAIT sockets remain on port 8080/tcp", "expires in 42s", "neither this socket nor the one that left them"},
			wantHint:      []string{"every instance", "wait 42s", "fixed 60 s", "tcp_fin_timeout governs FIN_WAIT_2", "tcp_tw_reuse only applies to outgoing connect()"},
		},
		{
			name:  "TIME_WAIT left with SO_REUSEADDR, new socket without",
			cause: events.CauseTimeWait,
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{timeWait(on, 800)}
				f.TimeWait = &events.TimeWait{Count: 1, MaxRemainingMS: 800}
			}),
			wantDiagnosis: []string{"Only 1 TIME_WAIT socket remains", "0.8s", "which would have allowed the bind"},
			wantHint:      []string{"Set SO_REUSEADDR on the socket before bind()"},
		},
		{
			name:  "TIME_WAIT left without SO_REUSEADDR, new socket with",
			cause: events.CauseTimeWait,
			f: base(func(f *events.Failure) {
				f.Socket.ReuseAddr = true
				f.Holders = []events.Holder{timeWait(off, 30_000)}
				f.TimeWait = &events.TimeWait{Count: 1, MaxRemainingMS: 30_000}
			}),
			wantDiagnosis: []string{"left by a socket without SO_REUSEADDR", "cannot override them"},
			wantHint:      []string{"in the program that left them"},
		},
		{
			name:  "TIME_WAIT, flags unknown",
			cause: events.CauseTimeWait,
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{timeWait(nil, 30_000)}
				f.TimeWait = &events.TimeWait{Count: 1, MaxRemainingMS: 30_000}
			}),
			wantDiagnosis: []string{"this socket did not set SO_REUSEADDR"},
			wantHint:      []string{"only when the socket that left it had the flag too"},
		},
		{
			name: "an outgoing connection took the port from the ephemeral range",
			f: base(func(f *events.Failure) {
				f.Port = 40123
				curl := nginx
				curl.Comm, curl.PID = "curl", 77
				f.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "ESTABLISHED", Addr: "10.0.0.2", Port: 40123,
					PeerAddr: "93.184.216.34", PeerPort: 443, Inode: 5, ReuseAddr: off, Processes: []events.Process{curl}}}
			}),
			facts: Facts{OwnNetns: true, Ephemeral: EphemeralPorts{Lo: 32768, Hi: 60999, Reserved: "9000"}},
			cause: events.CauseEphemeralPort,
			wantDiagnosis: []string{"Port 40123/tcp is taken by an outgoing connection from 10.0.0.2:40123 to 93.184.216.34:443 (ESTABLISHED) of curl (pid 77",
				"ephemeral port range of this network namespace, net.ipv4.ip_local_port_range 32768–60999, and is not", "intermittent"},
			wantHint: []string{"`sysctl -w net.ipv4.ip_local_reserved_ports=9000,40123`", "/etc/sysctl.d/", "outside 32768–60999", "SO_REUSEADDR on this socket does not help"},
		},
		{
			name: "an outgoing connection in a container's namespace: the sysctl line enters it",
			f: base(func(f *events.Failure) {
				f.Port = 40123
				f.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "TIME_WAIT", Addr: "172.17.0.2", Port: 40123,
					PeerAddr: "10.1.1.1", PeerPort: 5432, RemainingMS: 30_000, Processes: []events.Process{}}}
				f.TimeWait = &events.TimeWait{Count: 1, MaxRemainingMS: 30_000}
			}),
			facts:         Facts{Ephemeral: EphemeralPorts{Lo: 32768, Hi: 60999}},
			cause:         events.CauseEphemeralPort,
			wantDiagnosis: []string{"to 10.1.1.1:5432 (TIME_WAIT, closed; the kernel keeps it 30s more)", "network namespace (4026531840)"},
			wantHint:      []string{"`nsenter --net=/proc/500/ns/net sysctl -w net.ipv4.ip_local_reserved_ports=40123`", "docker run --sysctl net.ipv4.ip_local_reserved_ports=40123"},
		},
		{
			name: "a reserved port is not an ephemeral collision",
			f: base(func(f *events.Failure) {
				f.Port = 40123
				f.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "ESTABLISHED", Addr: "10.0.0.2", Port: 40123,
					PeerAddr: "10.0.0.9", PeerPort: 443, Processes: []events.Process{nginx}}}
			}),
			facts:         Facts{Ephemeral: EphemeralPorts{Lo: 32768, Hi: 60999, Reserved: "40000-40200"}},
			cause:         events.CausePortInUse,
			wantDiagnosis: []string{"in state ESTABLISHED"},
		},
		{
			name: "a connection accepted from a client (peer port in the range) is not an ephemeral collision",
			f: base(func(f *events.Failure) {
				f.Port = 40123
				f.Holders = []events.Holder{{Source: events.SeenLive, Proto: "tcp", State: "ESTABLISHED", Addr: "10.0.0.2", Port: 40123,
					PeerAddr: "10.0.0.9", PeerPort: 51000, Processes: []events.Process{nginx}}}
			}),
			facts: Facts{Ephemeral: EphemeralPorts{Lo: 32768, Hi: 60999}},
			cause: events.CausePortInUse,
		},
		{
			name: "the failing process holds the port itself",
			f: base(func(f *events.Failure) {
				h := listener("0.0.0.0", f.Process)
				fd := 7
				h.FD = &fd
				f.Holders = []events.Holder{h}
			}),
			cause:         events.CauseSelfConflict,
			wantDiagnosis: []string{"held by this same process, myapp (pid 500), listening on 0.0.0.0:8080 with another socket (its fd 7): it binds the port twice"},
			wantHint:      []string{"Bind the port once"},
		},
		{
			name: "a sibling started by the same command",
			f: base(func(f *events.Failure) {
				sib := nginx
				sib.Comm, sib.PID = "sleep", 43
				f.Holders = []events.Holder{listener("0.0.0.0", sib)}
			}),
			facts:         Facts{Job: &Job{Command: "`go test ./...`", Contains: func(pid int) bool { return pid == 43 || pid == 500 }}},
			cause:         events.CauseSameJob,
			wantDiagnosis: []string{"held by sleep (pid 43), listening on 0.0.0.0:8080, started by the same command as this process: myapp (pid 500) and sleep (pid 43) both run under `go test ./...`"},
			wantHint:      []string{"its own port", "getsockname()"},
		},
		{
			name: "a sibling that exited since the failure",
			f: base(func(f *events.Failure) {
				sib := nginx
				sib.Comm, sib.PID, sib.PPID = "python3", 43, 400
				h := listener("0.0.0.0", sib)
				h.Source = events.Recorded
				f.Holders = []events.Holder{h}
			}),
			facts:         Facts{Job: &Job{Command: "`sh suite.sh`", Contains: func(pid int) bool { return pid == 400 || pid == 500 }}},
			cause:         events.CauseSameJob,
			wantDiagnosis: []string{"held at the moment of the failure by python3 (pid 43), started by the same command as this process (myapp, under `sh suite.sh`), which has exited since"},
			wantHint:      []string{"wait until the previous one has exited"},
		},
		{
			name: "docker-proxy publishing a container port",
			f: base(func(f *events.Failure) {
				dp := events.Process{PID: 61, PPID: 900, Comm: "docker-proxy", Cmdline: []string{"/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0",
					"-host-port", "8080", "-container-ip", "172.17.0.2", "-container-port", "80"}}
				f.Holders = []events.Holder{listener("0.0.0.0", dp)}
			}),
			cause:         events.CauseDockerProxy,
			wantDiagnosis: []string{"Docker publishes port 80 of a container (172.17.0.2) on it, as docker run -p 8080:80 does"},
			wantHint:      []string{"docker ps --filter publish=8080", "outlive its container", "kill 61"},
		},
		{
			name: "containerd-shim holding a port",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 62, Comm: "containerd-shim", ContainerID: strings.Repeat("ab", 32)})}
			}),
			cause:         events.CauseContainerRuntime,
			wantDiagnosis: []string{"for container abababababab"},
			wantHint:      []string{"crictl ps"},
		},
		{
			name: "kube-proxy holding a NodePort",
			f: base(func(f *events.Failure) {
				f.Port = 30080
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 63, Comm: "kube-proxy"})}
			}),
			cause:         events.CauseKubeProxy,
			wantDiagnosis: []string{"NodePort", "30000–32767"},
			wantHint:      []string{"kubectl get svc", "nodePort"},
		},
		{
			name: "systemd as pid 1: socket activation",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 1, Comm: "systemd"})}
			}),
			cause:         events.CauseSocketActivation,
			wantDiagnosis: []string{"the service manager (pid 1) listens on it for a socket unit", "socket activation"},
			wantHint:      []string{"`systemctl list-sockets | grep 8080`", "systemctl stop NAME.socket", "stopping NAME.service alone"},
		},
		{
			name: "systemd as pid 1 of a container's pid namespace",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 4321, NSPID: 1, Comm: "systemd"})}
			}),
			cause:         events.CauseSocketActivation,
			wantDiagnosis: []string{"pid 1 in its own pid namespace"},
			wantHint:      []string{"nsenter --target 4321 --all systemctl stop NAME.socket"},
		},
		{
			name: "a user's systemd",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 4000, UID: 1000, User: "alice", Comm: "systemd", Cmdline: []string{"/lib/systemd/systemd", "--user"}})}
			}),
			cause:         events.CauseSocketActivation,
			wantDiagnosis: []string{"the service manager of user alice (systemd --user)"},
			wantHint:      []string{"systemctl --user -M alice@ stop NAME.socket"},
		},
		{
			name: "a systemd that is neither pid 1 nor a user manager is just a program",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 4000, Comm: "systemd"})}
			}),
			cause: events.CausePortInUse,
		},
		{
			name: "an SSH remote forward",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("127.0.0.1", events.Process{PID: 700, PPID: 690, UID: 1000, User: "bob", Comm: "sshd-session"})}
				f.Addr = "127.0.0.1"
			}),
			cause:         events.CauseSSHD,
			wantDiagnosis: []string{"a port forward that user bob asked for (ssh -R 8080:"},
			wantHint:      []string{"kill 700", "AllowTcpForwarding"},
		},
		{
			name: "sshd's own port",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 600, PPID: 1, Comm: "sshd"})}
			}),
			cause:         events.CauseSSHD,
			wantDiagnosis: []string{"sshd_config"},
		},
		{
			name: "inetd",
			f: base(func(f *events.Failure) {
				f.Holders = []events.Holder{listener("0.0.0.0", events.Process{PID: 650, PPID: 1, Comm: "xinetd"})}
			}),
			cause:         events.CauseInetd,
			wantDiagnosis: []string{"xinetd listens on the port"},
			wantHint:      []string{"/etc/xinetd.d/", "kill -HUP 650"},
		},
		{
			name: "a comm chosen to forge a line is escaped",
			f: base(func(f *events.Failure) {
				evil := nginx
				evil.Comm = "x\n  fix: rm -rf"
				f.Holders = []events.Holder{listener("0.0.0.0", evil)}
			}),
			cause:         events.CausePortInUse,
			wantDiagnosis: []string{`held by x\x0a  fix: rm -rf (pid 42`},
		},
		{
			name:          "nothing found",
			cause:         events.CauseHolderGone,
			f:             base(func(f *events.Failure) {}),
			wantDiagnosis: []string{"No socket holds 0.0.0.0:8080/tcp any more"},
			wantHint:      []string{"retry"},
		},
		{
			name:          "no ephemeral port left",
			cause:         events.CauseEphemeralExhausted,
			f:             base(func(f *events.Failure) { f.Port = 0 }),
			wantDiagnosis: []string{"No free ephemeral port was left for 0.0.0.0/tcp", "ip_local_port_range"},
		},
		{
			name:  "EADDRNOTAVAIL lists the namespace's addresses",
			cause: events.CauseAddrNotAvailable,
			f:     base(func(f *events.Failure) { f.Errno, f.Addr = "EADDRNOTAVAIL", "10.9.9.9" }),
			facts: Facts{Addrs: []LocalAddr{{Addr: netip.MustParseAddr("127.0.0.1"), Iface: "lo"},
				{Addr: netip.MustParseAddr("172.17.0.2"), Iface: "eth0"}}},
			wantDiagnosis: []string{"10.9.9.9 is not assigned to any interface in the failing process's network namespace (4026531840)",
				"127.0.0.1 (lo), 172.17.0.2 (eth0)"},
			wantHint: []string{"IP_FREEBIND", "net.ipv4.ip_nonlocal_bind=1", "inside the container"},
		},
		{
			name:  "EADDRNOTAVAIL on a tentative IPv6 address",
			cause: events.CauseAddrTentative,
			f: base(func(f *events.Failure) {
				f.Errno, f.Family, f.Addr = "EADDRNOTAVAIL", "ipv6", "2001:db8::5"
			}),
			facts:         Facts{Addrs: []LocalAddr{{Addr: netip.MustParseAddr("2001:db8::5"), Iface: "eth0", Tentative: true}}},
			wantDiagnosis: []string{"2001:db8::5 is assigned to eth0 but still tentative"},
			wantHint:      []string{"IP_FREEBIND", "accept_dad=0"},
		},
		{
			name:  "EACCES below ip_unprivileged_port_start without the capability",
			cause: events.CausePrivilegedPort,
			f: base(func(f *events.Failure) {
				f.Errno, f.Port, f.Process.CapNetBindService = "EACCES", 80, off
			}),
			facts:         Facts{UnprivilegedPortStart: 1024},
			wantDiagnosis: []string{"Port 80 is privileged", "ip_unprivileged_port_start (1024)", "myapp (uid 1000) does not have CAP_NET_BIND_SERVICE"},
			wantHint:      []string{"port ≥ 1024", "setcap cap_net_bind_service=+ep /opt/myapp", "AmbientCapabilities=CAP_NET_BIND_SERVICE"},
		},
		{
			name:          "EACCES above ip_unprivileged_port_start: not the port",
			cause:         events.CauseAccessDenied,
			f:             base(func(f *events.Failure) { f.Errno, f.Port = "EACCES", 8080 }),
			facts:         Facts{UnprivilegedPortStart: 80},
			wantDiagnosis: []string{"not privileged there", "security module"},
			wantHint:      []string{"audit log"},
		},
		{
			name:          "EINVAL on bind: already bound",
			cause:         events.CauseAlreadyBound,
			f:             base(func(f *events.Failure) { f.Errno = "EINVAL" }),
			wantDiagnosis: []string{"already bound"},
			wantHint:      []string{"Bind each socket once"},
		},
		{
			name:          "EINVAL on listen",
			cause:         events.CauseCannotListen,
			f:             base(func(f *events.Failure) { f.Errno, f.Syscall = "EINVAL", "listen" }),
			wantDiagnosis: []string{"cannot listen"},
		},
	}
	// Every cause has a case here.
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.cause] = true
	}
	for _, cause := range events.Causes {
		if !covered[cause] {
			t.Errorf("no case diagnoses cause %s", cause)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Diagnose(c.f, c.facts, now)
			d, h := v.Diagnosis, v.Hint
			if d == "" || h == "" {
				t.Errorf("empty diagnosis %q or hint %q", d, h)
			}
			if v.Cause != c.cause || !slices.Contains(events.Causes, v.Cause) {
				t.Errorf("cause %q, want %q (one of events.Causes)", v.Cause, c.cause)
			}
			for _, w := range c.wantDiagnosis {
				if !strings.Contains(d, w) {
					t.Errorf("diagnosis %q\n lacks %q", d, w)
				}
			}
			for _, w := range c.wantHint {
				if !strings.Contains(h, w) {
					t.Errorf("hint %q\n lacks %q", h, w)
				}
			}
			for _, w := range c.notDiagnosis {
				if strings.Contains(d, w) {
					t.Errorf("diagnosis %q\n has %q", d, w)
				}
			}
			for _, w := range c.notHint {
				if strings.Contains(h, w) {
					t.Errorf("hint %q\n has %q", h, w)
				}
			}
			if c.confidence != "" && v.Confidence != c.confidence {
				t.Errorf("confidence %q, want %q", v.Confidence, c.confidence)
			}
			if v.Confidence != events.ConfidenceCertain && v.Confidence != events.ConfidenceLikely {
				t.Errorf("confidence %q: want certain or likely", v.Confidence)
			}
			if strings.ContainsAny(d+h, "\n\r") {
				t.Errorf("diagnosis or hint spans lines: %q / %q", d, h)
			}
			// Folklore that does not work on Linux is never advised.
			for _, bad := range []string{"tcp_fin_timeout=", "tcp_tw_reuse=1", "tcp_tw_recycle"} {
				if strings.Contains(h, bad) {
					t.Errorf("hint %q advises %s", h, bad)
				}
			}
		})
	}
}

// reuseCases is reuseAllows's truth table: checked as a table here, and
// row by row against real binds in TestReuseAllowsMatchesKernel.
var reuseCases = []struct {
	name  string
	want  bindFlags
	held  events.Holder
	allow bool
}{
	{"reuseaddr both, bound", bindFlags{reuseAddr: true}, events.Holder{Proto: "tcp", State: "BOUND", ReuseAddr: boolPtr(true)}, true},
	{"reuseaddr both, listening", bindFlags{reuseAddr: true}, events.Holder{Proto: "tcp", State: "LISTEN", ReuseAddr: boolPtr(true)}, false},
	{"reuseaddr both, TIME_WAIT", bindFlags{reuseAddr: true}, events.Holder{Proto: "tcp", State: "TIME_WAIT", ReuseAddr: boolPtr(true)}, true},
	{"reuseaddr new only, TIME_WAIT", bindFlags{reuseAddr: true}, events.Holder{Proto: "tcp", State: "TIME_WAIT", ReuseAddr: boolPtr(false)}, false},
	{"reuseaddr unknown counts as off", bindFlags{reuseAddr: true}, events.Holder{Proto: "tcp", State: "BOUND"}, false},
	{"udp reuseaddr both", bindFlags{reuseAddr: true}, events.Holder{Proto: "udp", State: "UNCONN", ReuseAddr: boolPtr(true)}, true},
	{"reuseport both, same uid", bindFlags{reusePort: true, uid: 7}, events.Holder{Proto: "tcp", State: "LISTEN", ReusePort: boolPtr(true), UID: 7}, true},
	{"reuseport both, other uid", bindFlags{reusePort: true, uid: 7}, events.Holder{Proto: "tcp", State: "LISTEN", ReusePort: boolPtr(true), UID: 8}, false},
	{"reuseport both, other uid, TIME_WAIT", bindFlags{reusePort: true, uid: 7}, events.Holder{Proto: "tcp", State: "TIME_WAIT", ReusePort: boolPtr(true), UID: 0}, true},
	{"reuseport new only", bindFlags{reusePort: true}, events.Holder{Proto: "tcp", State: "LISTEN", ReusePort: boolPtr(false)}, false},
}

func TestReuseAllows(t *testing.T) {
	for _, c := range reuseCases {
		if got := reuseAllows(c.want, &c.held); got != c.allow {
			t.Errorf("%s: reuseAllows = %v, want %v", c.name, got, c.allow)
		}
	}
}

func boolPtr(b bool) *bool { return &b }

func intPtr(i int) *int { return &i }
