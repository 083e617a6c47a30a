package resolve

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/iterload"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// failure builds the Failure the tracer would report for this process's
// failed bind of proto addr:port, after checking that the kernel really
// refuses it with errno.
func failure(t *testing.T, proto, addr string, port int, opts testenv.Opts, errno syscall.Errno) *events.Failure {
	t.Helper()
	testenv.FailBind(t, proto, addr, port, opts, errno)
	f := &events.Failure{
		Syscall: "bind", Errno: errnoName(errno), ErrnoCode: int(errno),
		Proto: proto, Family: "ipv4", Addr: addr, Port: uint16(port),
		Socket:  events.Socket{ReuseAddr: opts.ReuseAddr, ReusePort: opts.ReusePort},
		Process: events.Process{PID: os.Getpid(), UID: uint32(os.Getuid()), Netns: testenv.Netns(t)},
	}
	if netip.MustParseAddr(addr).Is6() {
		f.Family = "ipv6"
		v6only := opts.V6Only != nil && *opts.V6Only
		f.Socket.V6Only = &v6only
	}
	return f
}

func errnoName(e syscall.Errno) string {
	return map[syscall.Errno]string{unix.EADDRINUSE: "EADDRINUSE", unix.EADDRNOTAVAIL: "EADDRNOTAVAIL",
		unix.EACCES: "EACCES", unix.EINVAL: "EINVAL"}[e]
}

func holderPIDs(h events.Holder) []int {
	var pids []int
	for _, p := range h.Processes {
		pids = append(pids, p.PID)
	}
	return pids
}

func findHolder(hs []events.Holder, state string) *events.Holder {
	for i := range hs {
		if hs[i].State == state {
			return &hs[i]
		}
	}
	return nil
}

func TestWhoGoListener(t *testing.T) {
	r := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	h := testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr", port))

	rep, err := r.Who(r.OwnNetns(), "tcp", uint16(port))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Holders) != 1 || rep.Sockets != 1 {
		t.Fatalf("holders = %+v, want one listener", rep.Holders)
	}
	got := rep.Holders[0]
	if got.State != "LISTEN" || got.Addr != "127.0.0.1" || got.Port != uint16(port) || got.Inode != h.Inode || got.Source != events.SeenLive {
		t.Errorf("holder = %+v, want LISTEN 127.0.0.1:%d inode %d", got, port, h.Inode)
	}
	if got.ReuseAddr == nil || !*got.ReuseAddr || got.ReusePort == nil || *got.ReusePort {
		t.Errorf("reuseaddr/reuseport = %v/%v, want on/off", onOff(got.ReuseAddr), onOff(got.ReusePort))
	}
	if !slices.Equal(holderPIDs(got), []int{h.PID}) {
		t.Fatalf("processes = %v, want [%d]", holderPIDs(got), h.PID)
	}
	p := got.Processes[0]
	exe := testenv.HelperBinary()
	if p.Exe != exe || p.PPID != os.Getpid() || p.User != "root" || len(p.Cmdline) == 0 || p.Cmdline[0] != exe {
		t.Errorf("process = %+v, want exe %s, ppid %d, user root, cmdline %s", p, exe, os.Getpid(), exe)
	}
	if age := time.Since(p.StartTime); age < 0 || age > time.Minute {
		t.Errorf("start time %v is %v ago, want within the last minute", p.StartTime, age)
	}
	if rep.Netns.Inode != testenv.Netns(t) || got.Netns != rep.Netns.Inode {
		t.Errorf("netns = %d/%d, want %d", rep.Netns.Inode, got.Netns, testenv.Netns(t))
	}

	udp, err := r.Who(r.OwnNetns(), "udp", uint16(port))
	if err != nil {
		t.Fatal(err)
	}
	if udp.Held() {
		t.Errorf("udp/%d reported held: %+v", port, udp.Holders)
	}
}

// TestWhoAgreesWithSS compares who's answer with ss -tanup on real sockets
// of every kind ss can show: TCP listeners (v4, v6 dual-stack), UDP, and a
// TIME_WAIT socket. ss 6.1 cannot list TCP sockets that are only bound, so
// those are checked on their own. The owning processes are also checked
// against lsof -i.
func TestWhoAgreesWithSS(t *testing.T) {
	testenv.Require(t, "ss", "who is compared with ss (iproute2)")
	r := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr", port))
	testenv.StartHelper(t, fmt.Sprintf("hold tcp ::1 %d reuseaddr v6only", port))
	testenv.StartHelper(t, fmt.Sprintf("hold udp :: %d dualstack", port))
	testenv.LeaveTimeWait(t, "127.0.0.2", port, false)
	bound := testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.3 %d nolisten", port))

	for _, proto := range []string{"tcp", "udp"} {
		rep, err := r.Who(r.OwnNetns(), proto, uint16(port))
		if err != nil {
			t.Fatal(err)
		}
		want := ssSockets(t, proto, port)
		var got []string
		for _, h := range rep.Holders {
			if h.State == "BOUND" {
				if h.Inode != bound.Inode || !slices.Equal(holderPIDs(h), []int{bound.PID}) {
					t.Errorf("bound-only socket = %+v, want inode %d pid %d", h, bound.Inode, bound.PID)
				}
				continue
			}
			got = append(got, ssLine(h.State, h.Addr, h.Port, holderPIDs(h)))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s/%d:\n who: %q\n ss:  %q", proto, port, got, want)
		}
		// lsof -i lists the processes with the port open; like ss it
		// reads the kernel's tables without bound-only TCP sockets.
		if _, err := exec.LookPath("lsof"); err == nil {
			out, _ := exec.Command("lsof", "-nP", "-t", fmt.Sprintf("-i%s:%d", proto, port)).Output()
			var lsofPIDs, whoPIDs []int
			for _, f := range strings.Fields(string(out)) {
				n, _ := strconv.Atoi(f)
				lsofPIDs = append(lsofPIDs, n)
			}
			for _, h := range rep.Holders {
				if h.State != "BOUND" {
					whoPIDs = append(whoPIDs, holderPIDs(h)...)
				}
			}
			slices.Sort(lsofPIDs)
			slices.Sort(whoPIDs)
			if whoPIDs = slices.Compact(whoPIDs); !slices.Equal(whoPIDs, slices.Compact(lsofPIDs)) {
				t.Errorf("%s/%d: who pids %v, lsof -i pids %v", proto, port, whoPIDs, lsofPIDs)
			}
		}
	}
}

// ssSockets runs ss for one port and renders each socket as ssLine does.
func ssSockets(t *testing.T, proto string, port int) []string {
	flag := map[string]string{"tcp": "-tanpH", "udp": "-uanpH"}[proto]
	out, err := exec.Command("ss", flag, fmt.Sprintf("sport = :%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		// State Recv-Q Send-Q Local Peer [users:(("comm",pid=N,fd=M),...)]
		state := map[string]string{"ESTAB": "ESTABLISHED", "TIME-WAIT": "TIME_WAIT"}[f[0]]
		if state == "" {
			state = f[0]
		}
		local := f[3]
		i := strings.LastIndexByte(local, ':')
		addr := strings.Trim(local[:i], "[]")
		if addr == "*" { // ss writes a dual-stack :: as *
			addr = "::"
		}
		if a, err := netip.ParseAddr(strings.Split(addr, "%")[0]); err == nil {
			addr = a.String()
		}
		p, _ := strconv.Atoi(local[i+1:])
		var pids []int
		if len(f) > 5 {
			for _, part := range strings.Split(f[5], "pid=")[1:] {
				n, _ := strconv.Atoi(part[:strings.IndexByte(part, ',')])
				if !slices.Contains(pids, n) {
					pids = append(pids, n)
				}
			}
		}
		slices.Sort(pids)
		lines = append(lines, ssLine(state, addr, uint16(p), pids))
	}
	slices.Sort(lines)
	return lines
}

func ssLine(state, addr string, port uint16, pids []int) string {
	return fmt.Sprintf("%s %s pids=%v", state, netip.AddrPortFrom(netip.MustParseAddr(addr), port), pids)
}

// TestTimeWaitRule checks on this kernel which SO_REUSEADDR combinations
// let a new socket bind over a TIME_WAIT socket (only both on), and that
// the diagnosis says so for each refusal.
func TestTimeWaitRule(t *testing.T) {
	r := newTestResolver(t, Options{})
	for _, c := range []struct {
		oldReuse, newReuse bool
		wantInDiagnosis    string
	}{
		{false, false, "neither this socket nor the one that left them set SO_REUSEADDR"},
		{false, true, "left by a socket without SO_REUSEADDR"},
		{true, false, "which would have allowed the bind"},
		{true, true, ""}, // the bind succeeds
	} {
		t.Run(fmt.Sprintf("old=%v,new=%v", c.oldReuse, c.newReuse), func(t *testing.T) {
			port := testenv.FreePort(t)
			testenv.LeaveTimeWait(t, "127.0.0.1", port, c.oldReuse)
			opts := testenv.Opts{ReuseAddr: c.newReuse}
			if c.wantInDiagnosis == "" {
				fd, err := testenv.Socket("tcp", "127.0.0.1", opts)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				if err := testenv.Bind(fd, "127.0.0.1", port); err != nil {
					t.Fatalf("bind with SO_REUSEADDR on both sides: %v, want success", err)
				}
				return
			}
			f := failure(t, "tcp", "127.0.0.1", port, opts, unix.EADDRINUSE)
			if err := r.Resolve(f); err != nil {
				t.Fatal(err)
			}
			if f.TimeWait == nil || f.TimeWait.Count != 1 || f.TimeWait.MaxRemainingMS <= 0 || f.TimeWait.MaxRemainingMS > 60_000 {
				t.Fatalf("time_wait = %+v, want 1 socket with 0-60 s left", f.TimeWait)
			}
			tw := findHolder(f.Holders, "TIME_WAIT")
			if tw == nil || tw.ReuseAddr == nil || *tw.ReuseAddr != c.oldReuse || len(tw.Processes) != 0 {
				t.Fatalf("TIME_WAIT holder = %+v, want reuseaddr=%v and no process", tw, c.oldReuse)
			}
			if !strings.Contains(f.Diagnosis, c.wantInDiagnosis) {
				t.Errorf("diagnosis %q lacks %q", f.Diagnosis, c.wantInDiagnosis)
			}
			for _, banned := range []string{"tcp_fin_timeout=", "tcp_tw_reuse=1"} {
				if strings.Contains(f.Hint, banned) {
					t.Errorf("hint %q recommends %s", f.Hint, banned)
				}
			}
		})
	}
}

func TestResolveRealServers(t *testing.T) {
	r := newTestResolver(t, Options{})
	t.Run("python-http.server", func(t *testing.T) {
		port := testenv.FreePort(t)
		cmd := startProgram(t, "python3", "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1")
		waitHeld(t, r, "tcp", uint16(port), "LISTEN")
		f := failure(t, "tcp", "127.0.0.1", port, testenv.Opts{}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil {
			t.Fatal(err)
		}
		h := findHolder(f.Holders, "LISTEN")
		if h == nil || !slices.Equal(holderPIDs(*h), []int{cmd.Process.Pid}) {
			t.Fatalf("holders = %+v, want python3 pid %d listening", f.Holders, cmd.Process.Pid)
		}
		p := h.Processes[0]
		if !strings.HasPrefix(p.Comm, "python") || !slices.Contains(p.Cmdline, "http.server") {
			t.Errorf("process = %+v, want python3 -m http.server", p)
		}
		want := fmt.Sprintf("Port %d/tcp is held by %s (pid %d, user root), listening on 127.0.0.1:%d", port, p.Comm, p.PID, port)
		if !strings.Contains(f.Diagnosis, want) || !strings.Contains(f.Hint, strconv.Itoa(p.PID)) {
			t.Errorf("diagnosis %q / hint %q, want %q and the pid", f.Diagnosis, f.Hint, want)
		}
	})
	t.Run("socat-udp", func(t *testing.T) {
		port := testenv.FreePort(t)
		cmd := startProgram(t, "socat", "-u", fmt.Sprintf("UDP-RECV:%d,bind=127.0.0.1", port), "OPEN:/dev/null")
		waitHeld(t, r, "udp", uint16(port), "UNCONN")
		f := failure(t, "udp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil {
			t.Fatal(err)
		}
		h := findHolder(f.Holders, "UNCONN")
		if h == nil || !slices.Equal(holderPIDs(*h), []int{cmd.Process.Pid}) || h.Processes[0].Comm != "socat" {
			t.Fatalf("holders = %+v, want socat pid %d", f.Holders, cmd.Process.Pid)
		}
		if !strings.Contains(f.Diagnosis, "wildcard address covers every address") {
			t.Errorf("diagnosis %q should explain the wildcard overlap", f.Diagnosis)
		}
	})
	t.Run("nginx-workers", func(t *testing.T) {
		port := testenv.FreePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "nginx.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off; master_process on; worker_processes 2;
pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events { worker_connections 64; }
http { access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen 127.0.0.1:%[2]d; } }
`, dir, port)), 0o644)
		cmd := startProgram(t, "nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf)
		deadline := time.Now().Add(testenv.StartTimeout)
		var h *events.Holder
		for {
			rep, err := r.Who(r.OwnNetns(), "tcp", uint16(port))
			if err != nil {
				t.Fatal(err)
			}
			if h = findHolder(rep.Holders, "LISTEN"); h != nil && len(h.Processes) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx master + 2 workers never all held %d: %+v", port, rep.Holders)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The pre-forked workers share the master's socket: one holder,
		// three processes, the master among them.
		workers := 0
		for _, p := range h.Processes {
			switch {
			case p.PID == cmd.Process.Pid:
			case p.PPID == cmd.Process.Pid && p.Comm == "nginx":
				workers++
			default:
				t.Errorf("unexpected owner %+v", p)
			}
		}
		if workers != 2 || !slices.Contains(holderPIDs(*h), cmd.Process.Pid) {
			t.Errorf("owners = %v, want master %d and 2 workers", holderPIDs(*h), cmd.Process.Pid)
		}
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{ReuseAddr: true}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(f.Diagnosis, "nginx (pids ") {
			t.Errorf("diagnosis %q should name nginx and its pids", f.Diagnosis)
		}
	})
}

// TestOrphanIsNotALeftoverWithoutEvidence: a server forks a child that
// inherits its listening socket, then exits; the child (now a child of
// init) keeps the port. With no kernel record of how the server ended
// (no tracer here), that is a daemon's shape: the child is the running
// instance of the same program, and no hint kills it.
func TestOrphanIsNotALeftoverWithoutEvidence(t *testing.T) {
	r := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	child := startOrphan(t, port)
	f := failure(t, "tcp", "127.0.0.1", port, testenv.Opts{ReuseAddr: true}, unix.EADDRINUSE)
	f.Process.Exe = testenv.HelperBinary() // what the tracer captured: the same program
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	h := findHolder(f.Holders, "LISTEN")
	if h == nil || !slices.Equal(holderPIDs(*h), []int{child.PID}) || h.Processes[0].PPID != 1 {
		t.Fatalf("holders = %+v, want only the orphan %d", f.Holders, child.PID)
	}
	if f.Cause != events.CauseAlreadyRunning || strings.Contains(f.Diagnosis, "leftover") || strings.Contains(f.Hint, fmt.Sprintf("kill %d", child.PID)) {
		t.Errorf("cause %s, diagnosis %q / hint %q: want already_running, no leftover, no kill %d", f.Cause, f.Diagnosis, f.Hint, child.PID)
	}
}

// startOrphan starts a listener on 127.0.0.1:port whose process forks a
// child that inherits the socket and then exits; it returns once the child
// is an orphan (ppid 1), by which time the parent's fds are closed (the
// kernel closes them before it reparents the children).
func startOrphan(t *testing.T, port int) *testenv.HelperProc {
	t.Helper()
	// Not cmd.Wait for the parent: it would close the stdin pipe that the
	// child shares, and the child would exit too.
	child := testenv.StartHelper(t, fmt.Sprintf("inherit 127.0.0.1 %d", port))
	testenv.WaitForParent(t, child.PID, 1)
	return child
}

func TestDualStackOverlap(t *testing.T) {
	r := newTestResolver(t, Options{})
	t.Run("ipv4 against dual-stack ::", func(t *testing.T) {
		port := testenv.FreePort(t)
		h := testenv.StartHelper(t, fmt.Sprintf("hold tcp :: %d dualstack", port))
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil {
			t.Fatal(err)
		}
		got := findHolder(f.Holders, "LISTEN")
		if got == nil || got.Addr != "::" || got.V6Only == nil || *got.V6Only || got.Inode != h.Inode {
			t.Fatalf("holders = %+v, want [::] v6only=false inode %d", f.Holders, h.Inode)
		}
		if !strings.Contains(f.Diagnosis, "without IPV6_V6ONLY is dual-stack") || !strings.Contains(f.Hint, "IPV6_V6ONLY=1") {
			t.Errorf("diagnosis %q / hint %q, want the dual-stack explanation", f.Diagnosis, f.Hint)
		}
	})
	t.Run("dual-stack :: against ipv4", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", port))
		f := failure(t, "tcp", "::", port, testenv.Opts{V6Only: boolPtr(false)}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil {
			t.Fatal(err)
		}
		if h := findHolder(f.Holders, "LISTEN"); h == nil || h.Addr != "127.0.0.1" {
			t.Fatalf("holders = %+v, want 127.0.0.1", f.Holders)
		}
		if !strings.Contains(f.Diagnosis, "also claims the port on every IPv4 address") {
			t.Errorf("diagnosis %q, want the dual-stack explanation", f.Diagnosis)
		}
		// With IPV6_V6ONLY the same bind succeeds: the hint is right.
		testenv.Hold(t, "tcp", "::", port, testenv.Opts{V6Only: boolPtr(true)})
	})
	t.Run("v6only :: is not a holder of 0.0.0.0", func(t *testing.T) {
		port := testenv.FreePort(t)
		testenv.StartHelper(t, fmt.Sprintf("hold tcp :: %d v6only", port))
		h2 := testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", port))
		f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil {
			t.Fatal(err)
		}
		if len(f.Holders) != 1 || f.Holders[0].Inode != h2.Inode {
			t.Fatalf("holders = %+v, want only the IPv4 listener (inode %d)", f.Holders, h2.Inode)
		}
	})
}

// TestAddrsOverlapMatchesKernel binds every pair of addresses on this kernel
// (without SO_REUSEADDR, so only the addresses decide) and checks that
// addrsOverlap, with the quirks probed on this kernel, predicts each
// EADDRINUSE.
func TestAddrsOverlapMatchesKernel(t *testing.T) {
	testenv.RequireRoot(t)
	// The probe may find the v4-mapped wildcard gap only where bhash2
	// exists without its upstream fix: 6.1 to 6.7 (6.1 stable has it).
	if q := bindQuirksFor("tcp"); q.mappedAnyMissed {
		if !testenv.KernelAtLeast(t, 6, 1) || testenv.KernelAtLeast(t, 6, 8) {
			t.Errorf("probe found TCP ::ffff:127.0.0.1 binding next to ::ffff:0.0.0.0 on a kernel that refuses it (before 6.1 or from 6.8)")
		}
		t.Logf("this kernel lets TCP ::ffff:127.0.0.1 bind next to ::ffff:0.0.0.0 (6.1 stable's bhash2 gap)")
	}
	type sock struct {
		addr   string
		v6only *bool
	}
	on, off := boolPtr(true), boolPtr(false)
	socks := []sock{
		{"0.0.0.0", nil}, {"127.0.0.1", nil}, {"127.0.0.2", nil},
		{"::", off}, {"::", on}, {"::1", off}, {"::1", on},
		{"::ffff:127.0.0.1", off}, {"::ffff:0.0.0.0", off},
	}
	for _, proto := range []string{"tcp", "udp"} {
		for _, held := range socks {
			for _, want := range socks {
				port := testenv.FreePort(t)
				hfd, err := testenv.Socket(proto, held.addr, testenv.Opts{V6Only: held.v6only})
				if err != nil {
					t.Fatal(err)
				}
				if err := testenv.Bind(hfd, held.addr, port); err != nil {
					t.Fatalf("bind held %v: %v", held, err)
				}
				wfd, err := testenv.Socket(proto, want.addr, testenv.Opts{V6Only: want.v6only})
				if err != nil {
					t.Fatal(err)
				}
				kernel := testenv.Bind(wfd, want.addr, port) == unix.EADDRINUSE
				unix.Close(wfd)
				unix.Close(hfd)
				predicted := addrsOverlap(testBoundAddr(want.addr, want.v6only), testBoundAddr(held.addr, held.v6only), bindQuirksFor(proto))
				if predicted != kernel {
					t.Errorf("%s: held %s v6only=%s, new %s v6only=%s: kernel conflict=%v, addrsOverlap=%v",
						proto, held.addr, onOff(held.v6only), want.addr, onOff(want.v6only), kernel, predicted)
				}
			}
		}
	}
}

func testBoundAddr(addr string, v6only *bool) boundAddr {
	a := netip.MustParseAddr(addr)
	return boundAddr{v6: a.Is6(), addr: a, v6only: v6only != nil && *v6only}
}

func TestEADDRNOTAVAILListsAddresses(t *testing.T) {
	r := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	// 203.0.113.1 is TEST-NET-3: documentation only, on no interface here.
	f := failure(t, "tcp", "203.0.113.1", port, testenv.Opts{}, unix.EADDRNOTAVAIL)
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"203.0.113.1 is not assigned to any interface", "127.0.0.1 (lo)"} {
		if !strings.Contains(f.Diagnosis, want) {
			t.Errorf("diagnosis %q lacks %q", f.Diagnosis, want)
		}
	}
	if !strings.Contains(f.Hint, "IP_FREEBIND") || !strings.Contains(f.Hint, "net.ipv4.ip_nonlocal_bind") {
		t.Errorf("hint %q should mention IP_FREEBIND and ip_nonlocal_bind", f.Hint)
	}
	if len(f.Holders) != 0 {
		t.Errorf("holders = %+v, want none", f.Holders)
	}
}

// EACCES below ip_unprivileged_port_start, in a network namespace of the
// test's own with the sysctl at 700 (not the default 1024): the diagnosis
// must read it in the failing socket's namespace.
func TestEACCESPrivilegedPort(t *testing.T) {
	r := newTestResolver(t, Options{})
	const nobody, port = 65534, 650
	name, nsIno := testenv.NewNetns(t)
	testenv.SetNetnsSysctl(t, name, "net/ipv4/ip_unprivileged_port_start", "700")
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	cmd := testenv.HelperAsUser(t, fmt.Sprintf("bind tcp 0.0.0.0 %d", port), nobody)
	testenv.InPrivateNetns(t, ns, func() { err = cmd.Run() })
	if ee, ok := err.(*exec.ExitError); !ok || syscall.Errno(ee.ExitCode()) != unix.EACCES {
		t.Fatalf("bind port %d as uid %d: %v, want exit status %d (EACCES)", port, nobody, err, unix.EACCES)
	}
	no := false
	f := &events.Failure{Syscall: "bind", Errno: "EACCES", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: port,
		Process: events.Process{PID: cmd.Process.Pid, UID: nobody, Comm: "helper", Netns: nsIno, CapNetBindService: &no}}
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	want := "below net.ipv4.ip_unprivileged_port_start (700)"
	if !strings.Contains(f.Diagnosis, want) || !strings.Contains(f.Diagnosis, "does not have CAP_NET_BIND_SERVICE") {
		t.Errorf("diagnosis %q, want %q and the missing capability", f.Diagnosis, want)
	}
	if !strings.Contains(f.Hint, "cap_net_bind_service") {
		t.Errorf("hint %q should say how to grant the capability", f.Hint)
	}
}

func TestResolveInNetns(t *testing.T) {
	testenv.RequireRoot(t)
	r := newTestResolver(t, Options{})
	name, nsIno := testenv.NewNetns(t)
	port := testenv.FreePort(t)
	inNS := testenv.InNetns(name)
	holder := testenv.StartHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port), inNS...)
	try := testenv.StartHelper(t, fmt.Sprintf("trybind tcp 127.0.0.1 %d", port), inNS...)
	if try.Line[0] != "errno" || try.Line[1] != strconv.Itoa(int(unix.EADDRINUSE)) {
		t.Fatalf("bind inside the namespace: %q, want EADDRINUSE", try.Line)
	}
	tryPID, _ := strconv.Atoi(try.Line[2])

	// The host's namespace has nothing on the port.
	if rep, err := r.Who(r.OwnNetns(), "tcp", uint16(port)); err != nil || rep.Held() {
		t.Fatalf("host netns: %+v, %v; want free", rep, err)
	}
	f := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "127.0.0.1", Port: uint16(port),
		Process: events.Process{PID: tryPID, Netns: nsIno}}
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	h := findHolder(f.Holders, "LISTEN")
	if h == nil || h.Netns != nsIno || !slices.Equal(holderPIDs(*h), []int{holder.PID}) {
		t.Fatalf("holders = %+v, want pid %d in netns %d", f.Holders, holder.PID, nsIno)
	}
	if f.Process.Netns != nsIno || f.Process.Comm == "" {
		t.Errorf("failing process = %+v, want it filled, in netns %d", f.Process, nsIno)
	}

	// Once the failing process is gone, the namespace is still found by
	// its inode, through the /run/netns mount.
	try.Stop()
	r2 := newTestResolver(t, Options{})
	f2 := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "127.0.0.1", Port: uint16(port),
		Process: events.Process{PID: tryPID, Netns: nsIno}}
	if err := r2.Resolve(f2); err != nil {
		t.Fatal(err)
	}
	if h := findHolder(f2.Holders, "LISTEN"); h == nil || !slices.Equal(holderPIDs(*h), []int{holder.PID}) {
		t.Fatalf("after the failing process exited: holders = %+v, want pid %d", f2.Holders, holder.PID)
	}
	// EADDRNOTAVAIL lists the namespace's addresses, not the host's.
	f3 := &events.Failure{Syscall: "bind", Errno: "EADDRNOTAVAIL", Proto: "tcp", Family: "ipv4", Addr: "203.0.113.1", Port: uint16(port),
		Process: events.Process{PID: holder.PID, Netns: nsIno}}
	if err := r.Resolve(f3); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f3.Diagnosis, "the addresses there are 127.0.0.1 (lo), ::1 (lo)") {
		t.Errorf("diagnosis %q, want only the namespace's loopback addresses", f3.Diagnosis)
	}
}

// TestRecordedHolders: the kernel recorded the holder at the moment of
// failure; it merges with the live socket while that exists, and stays
// "recorded" once its process has exited (the restart race).
func TestRecordedHolders(t *testing.T) {
	r := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	h := testenv.StartHelper(t, fmt.Sprintf("hold tcp 0.0.0.0 %d", port))
	recorded := func() []events.Holder {
		return []events.Holder{{Source: events.Recorded, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: uint16(port),
			Inode: h.Inode, Since: time.Now().Add(-time.Second),
			Processes: []events.Process{{PID: h.PID, Comm: "resolve.test", PPID: os.Getpid()}}}}
	}
	f := failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
	f.Holders = recorded()
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	if len(f.Holders) != 1 || f.Holders[0].Source != events.SeenLive || f.Holders[0].Since.IsZero() {
		t.Fatalf("holders = %+v, want one seen_live holder keeping the recorded bind time", f.Holders)
	}
	if !strings.Contains(f.Diagnosis, "bound 1") {
		t.Errorf("diagnosis %q should say how long ago it was bound", f.Diagnosis)
	}

	// The holder exits 5 ms after the failure, before resolution.
	f = failure(t, "tcp", "0.0.0.0", port, testenv.Opts{}, unix.EADDRINUSE)
	f.Holders = recorded()
	time.Sleep(5 * time.Millisecond)
	h.Stop()
	if err := r.Resolve(f); err != nil {
		t.Fatal(err)
	}
	if len(f.Holders) != 1 || f.Holders[0].Source != events.Recorded || f.Holders[0].Processes[0].PID != h.PID {
		t.Fatalf("holders = %+v, want the recorded holder pid %d", f.Holders, h.PID)
	}
	if !strings.Contains(f.Diagnosis, "has let go of it since (closed the socket, or exited): a restart race") {
		t.Errorf("diagnosis %q, want the restart race", f.Diagnosis)
	}
}

// TestProcScanMatchesBPFIter: the fallback finds the same owners.
func TestProcScanMatchesBPFIter(t *testing.T) {
	bpf := newTestResolver(t, Options{})
	scan := newTestResolver(t, Options{NoBPF: true})
	if m, _ := scan.OwnerLookup(); m != OwnersProcScan {
		t.Fatalf("NoBPF resolver uses %s", m)
	}
	port := testenv.FreePort(t)
	child := startOrphan(t, port)
	other := testenv.StartHelper(t, fmt.Sprintf("hold udp 0.0.0.0 %d", port))
	for _, proto := range []string{"tcp", "udp"} {
		a, err := bpf.Who(bpf.OwnNetns(), proto, uint16(port))
		if err != nil {
			t.Fatal(err)
		}
		b, err := scan.Who(scan.OwnNetns(), proto, uint16(port))
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Holders) != 1 || len(b.Holders) != 1 {
			t.Fatalf("%s: bpf %+v, scan %+v: want one holder each", proto, a.Holders, b.Holders)
		}
		want := map[string]int{"tcp": child.PID, "udp": other.PID}[proto]
		if !slices.Equal(holderPIDs(a.Holders[0]), []int{want}) || !slices.Equal(holderPIDs(b.Holders[0]), []int{want}) {
			t.Errorf("%s: bpf pids %v, scan pids %v, want [%d]", proto, holderPIDs(a.Holders[0]), holderPIDs(b.Holders[0]), want)
		}
		if b.Holders[0].ReuseAddr != nil {
			t.Errorf("%s: the /proc scan cannot know reuseaddr, got %v", proto, *b.Holders[0].ReuseAddr)
		}
	}
}

// TestOwnerVariantsAgree loads each socket-owner program of
// bpf/iters.bpf.c on its own and checks that it reports the owner and the
// socket flags of real sockets. The per-file variant must load on every
// kernel the matrix runs (5.10 up), the kfunc one from 6.2 — both by
// iterload, against only the kernel types they read.
func TestOwnerVariantsAgree(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	tcp := testenv.StartHelper(t, fmt.Sprintf("hold tcp :: %d reuseaddr v6only", port))
	udp := testenv.StartHelper(t, fmt.Sprintf("hold udp 0.0.0.0 %d reuseport", port))
	// A bound-only TCP socket, not asked for by inode: found by port.
	boundPort := testenv.FreePort(t)
	bound := testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr nolisten", boundPort))
	var ns unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &ns); err != nil {
		t.Fatal(err)
	}
	for _, variant := range ownerVariants {
		it, err := loadIterators([]string{variant})
		if variant == iterload.SocketOwners && errors.Is(err, ebpf.ErrNotSupported) && !testenv.KernelAtLeast(t, 6, 2) {
			t.Logf("%s: not on this kernel (before 6.2): %v", variant, err)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", variant, err)
		}
		if it.Fallback != nil {
			t.Errorf("%s: iterload could not load it (cilium/ebpf did, decoding the whole kernel BTF): %v", variant, it.Fallback)
		}
		owners, boundOnly, err := it.socketOwners([]uint32{uint32(tcp.Inode), uint32(udp.Inode)},
			&boundQuery{netns: uint32(ns.Ino), port: uint16(boundPort)})
		it.close()
		if err != nil {
			t.Fatalf("%s: %v", variant, err)
		}
		if len(boundOnly) != 1 || boundOnly[0].inode != uint32(bound.Inode) ||
			boundOnly[0].src != netip.MustParseAddr("127.0.0.1") || boundOnly[0].sport != uint16(boundPort) {
			t.Errorf("%s: bound-only sockets %+v, want inode %d on 127.0.0.1:%d", variant, boundOnly, bound.Inode, boundPort)
		}
		if o := owners[uint32(bound.Inode)]; o == nil || !slices.Equal(o.pids, []int{bound.PID}) {
			t.Errorf("%s: owners of the bound-only socket %+v, want pid %d", variant, o, bound.PID)
		}
		for _, c := range []struct {
			h                          *testenv.HelperProc
			reuseAddr, reusePort, v6on bool
		}{{tcp, true, false, true}, {udp, false, true, false}} {
			o := owners[uint32(c.h.Inode)]
			if o == nil || !slices.Equal(o.pids, []int{c.h.PID}) || o.reuseAddr == nil {
				t.Errorf("%s: inode %d: owners %+v, want pid %d with flags", variant, c.h.Inode, o, c.h.PID)
				continue
			}
			if *o.reuseAddr != c.reuseAddr || *o.reusePort != c.reusePort || *o.v6only != c.v6on {
				t.Errorf("%s: inode %d: reuseaddr %v reuseport %v v6only %v, want %v %v %v", variant, c.h.Inode,
					*o.reuseAddr, *o.reusePort, *o.v6only, c.reuseAddr, c.reusePort, c.v6on)
			}
		}
	}
}

// TestDiagListsBoundOnlyProbe: the probe finds sock_diag's bound-inactive
// dump exactly on the kernels that have it (6.8 on), so that bound-only
// TCP sockets are looked for by the task iterator on all the others.
func TestDiagListsBoundOnlyProbe(t *testing.T) {
	testenv.RequireRoot(t)
	if got, want := probeDiagListsBoundOnly(), testenv.KernelAtLeast(t, 6, 8); got != want {
		t.Errorf("sock_diag lists a bound-only TCP socket: %v, want %v on this kernel", got, want)
	}
}

// TestStormCostsOneResolution: failures on one port within the cache window
// share one snapshot. (A window of an hour: 100 failures take longer than
// a second in an emulated guest.)
func TestStormCostsOneResolution(t *testing.T) {
	r := newTestResolver(t, Options{CacheTTL: time.Hour})
	port := testenv.FreePort(t)
	testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d", port))
	h, err := r.netns.acquire("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.netns.release(h)
	first, err := r.portSnapshot(h, "tcp", uint16(port))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		f := failure(t, "tcp", "127.0.0.1", port, testenv.Opts{}, unix.EADDRINUSE)
		if err := r.Resolve(f); err != nil || len(f.Holders) != 1 {
			t.Fatalf("resolve: %v, %+v", err, f.Holders)
		}
		f.Holders[0].Processes[0].Comm = "changed by a caller"
	}
	again, _ := r.portSnapshot(h, "tcp", uint16(port))
	if again != first {
		t.Error("a failure within the cache window resolved the port again")
	}
	if c := first.sockets[0].holder.Processes[0].Comm; c == "changed by a caller" {
		t.Error("callers share the cached holders' processes")
	}
}

// A one-shot lookup (who) on a small host scans /proc instead of loading
// the iterators, and must answer the same: the same holders, processes
// and SO_REUSEADDR/SO_REUSEPORT flags (read through pidfd_getfd), so the
// same SO_REUSEPORT groups. A TIME_WAIT socket's flags only the tcp
// iterator reads: with one on the port the iterators answer. So do they
// on a host past ScanMaxFDs. Before 6.2 (stat() does not count a
// /proc/PID/fd directory's fds) and, for TCP, before 6.8 (sock_diag does
// not list bound-only sockets) the iterators always answer: checked too.
func TestOneShotScanAgreesWithIterator(t *testing.T) {
	testenv.RequireRoot(t)
	smallHost := func(proto string) string {
		if !host.ReleaseAtLeast(6, 2) || (proto == "tcp" && !probedDiagListsBoundOnly()) {
			return OwnersBPFIter
		}
		return OwnersProcScan
	}
	iter := newTestResolver(t, Options{})
	port := testenv.FreePort(t)
	testenv.StartHelper(t, fmt.Sprintf("hold tcp 127.0.0.1 %d reuseaddr", port))
	testenv.StartHelper(t, fmt.Sprintf("hold tcp ::1 %d reuseport v6only", port))
	testenv.StartHelper(t, fmt.Sprintf("hold tcp ::1 %d reuseport v6only", port))
	testenv.StartHelper(t, fmt.Sprintf("hold udp :: %d dualstack reuseaddr", port))
	lookup := func(r *Resolver, proto string) (*events.Who, string) {
		t.Helper()
		rec, err := r.WhoRecord([]host.Netns{r.OwnNetns()}, proto, uint16(port), diagnose.EphemeralPorts{})
		if err != nil {
			t.Fatal(err)
		}
		method, why := r.OwnerLookup()
		if why != nil {
			t.Fatalf("owner lookup: %v", why)
		}
		return rec, method
	}
	oneShot := func(opts Options) *Resolver {
		opts.OneShot, opts.CacheTTL = true, -1
		r, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	// "Small" whatever else runs on this host: another test run beside
	// this one can open more fds than smallHostFDs.
	small := Options{ScanMaxFDs: 1 << 30}
	for _, proto := range []string{"tcp", "udp"} {
		want, _ := lookup(iter, proto)
		got, method := lookup(oneShot(small), proto)
		if method != smallHost(proto) {
			t.Errorf("%s: one-shot lookup on a small host used %s, want %s", proto, method, smallHost(proto))
		}
		if !reflect.DeepEqual(got.Holders, want.Holders) || !reflect.DeepEqual(got.ReusePortGroups, want.ReusePortGroups) {
			t.Errorf("%s: /proc scan says\n%+v\n%+v\niterator says\n%+v\n%+v", proto, got.Holders, got.ReusePortGroups, want.Holders, want.ReusePortGroups)
		}
		if _, method := lookup(oneShot(Options{ScanMaxFDs: 1}), proto); method != OwnersBPFIter {
			t.Errorf("%s: one-shot lookup past ScanMaxFDs used %s, want %s", proto, method, OwnersBPFIter)
		}
	}
	if want, _ := lookup(iter, "tcp"); len(want.ReusePortGroups) != 1 {
		t.Errorf("reuseport groups %+v, want the two ::1 listeners", want.ReusePortGroups)
	}
	testenv.LeaveTimeWait(t, "127.0.0.2", port, false)
	if _, method := lookup(oneShot(small), "tcp"); method != OwnersBPFIter {
		t.Errorf("one-shot lookup with a TIME_WAIT socket used %s, want %s (its flags)", method, OwnersBPFIter)
	}
}
