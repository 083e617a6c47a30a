package corpus

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// socat on both stacks: an IPv6 socket on :: without IPV6_V6ONLY covers
// IPv4 too, and collides with a socket on 0.0.0.0 — in either order. The
// two are the same program; dual_stack still wins, as its fix is one
// socket option.
func TestSocat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		holder, failer string
	}{
		{"dual_stack_v4_then_v6", "TCP4-LISTEN:%d,bind=0.0.0.0,fork,reuseaddr", "TCP6-LISTEN:%d,ipv6only=0"},
		{"dual_stack_v6_then_v4", "TCP6-LISTEN:%d,ipv6only=0,fork,reuseaddr", "TCP4-LISTEN:%d,bind=0.0.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScene(t, "socat")
			port := testenv.FreePort(t)
			tr := startTrace(t, port)
			holder := s.start(s.command("socat", fmt.Sprintf(tc.holder, port), "EXEC:/bin/cat"))
			waitListening(t, port, 1)
			failer := s.start(s.command("socat", fmt.Sprintf(tc.failer, port), "EXEC:/bin/cat"))
			if code := failer.wait(t, 30*time.Second); code == 0 {
				t.Fatalf("the second socat exited 0:\n%s", failer.output())
			}
			tr.awaitAbandoned(t, port)
			for _, f := range tr.failed(t, failer.pid(), "the second socat") {
				wantCause(t, f, "dual_stack", "")
				holds(t, f, holder.pid())
			}
			tr.gaveUp(t, port, "dual_stack")
		})
	}
}

// systemd-socket-activate holds a port for a service it starts on the
// first connection (as a .socket unit does); the service, started by hand
// meanwhile, fails.
func TestSocketActivate(t *testing.T) {
	t.Parallel()
	t.Run("holds_port_for_service", func(t *testing.T) {
		t.Parallel()
		s := newScene(t, "systemd-socket-activate", "python3")
		port := testenv.FreePort(t)
		tr := startTrace(t, port)
		activator := s.start(s.command("systemd-socket-activate", "-l", fmt.Sprintf("127.0.0.1:%d", port),
			"python3", "-m", "http.server"))
		waitListening(t, port, 1)
		service := s.start(s.command("python3", "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1"))
		if code := service.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("http.server exited 0:\n%s", service.output())
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, service.pid(), "http.server") {
			wantCause(t, f, "socket_activation", "")
			holds(t, f, activator.pid())
		}
		tr.gaveUp(t, port, "socket_activation")
	})
}

// A Go net/http server, an ordinary compiled program, started twice.
// Needs no package: it runs in the kernel matrix too.
func TestGoServer(t *testing.T) {
	t.Parallel()
	t.Run("started_twice", func(t *testing.T) {
		t.Parallel()
		s := newScene(t)
		port := testenv.FreePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		serve := func() *exec.Cmd {
			if goServerBin != "" {
				return s.command(goServerBin, addr)
			}
			cmd := s.command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), roleEnv+"=goserver "+addr)
			return cmd
		}
		tr := startTrace(t, port)
		running := s.start(serve())
		waitListening(t, port, 1)
		httpOK(t, port)
		second := s.start(serve())
		if code := second.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("the second Go server exited 0:\n%s", second.output())
		}
		if !strings.Contains(second.output(), "address already in use") {
			t.Errorf("the second Go server failed for another reason:\n%s", second.output())
		}
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, second.pid(), "the second Go server") {
			alreadyRunning(t, f, running.pid())
		}
		tr.gaveUp(t, port, "already_running", running.pid())
	})
}

// A process whose own outgoing connection holds the port it then wants
// to listen on: its connection's local port is in the ephemeral range, so
// a kernel could have handed it out to any connect(). ephemeral_port, and
// the ip_local_reserved_ports line that keeps connect() off the port —
// not "bind the port once". In a network namespace of its own, so that
// the port is free whatever runs on the host; needs no package.
func TestConnectFirst(t *testing.T) {
	t.Parallel()
	t.Run("connect_then_listen", func(t *testing.T) {
		t.Parallel()
		s := newScene(t)
		ns := testenv.PrivateNetns(t)
		var lo, hi int
		testenv.InPrivateNetns(t, ns, func() {
			b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
				t.Fatalf("ip_local_port_range %q: %v", b, err)
			}
		})
		port := lo + (hi-lo)/2 // inside the range: a port connect() may pick
		peer := lo - 1         // the server it connects to, outside the range
		tr := startTrace(t, port)
		testenv.InPrivateNetns(t, ns, func() { testenv.Hold(t, "tcp", "127.0.0.1", peer, testenv.Opts{}) })
		cmd := s.command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=connectfirst %d %d", roleEnv, peer, port))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd.Stdout = w
		var p *proc
		testenv.InPrivateNetns(t, ns, func() { p = s.start(cmd) })
		w.Close()
		defer stdin.Close()
		out.SetReadDeadline(time.Now().Add(15 * time.Second))
		rd := bufio.NewReader(out)
		connected, _ := rd.ReadString('\n')
		if connected != fmt.Sprintf("connected %d\n", port) {
			t.Fatalf("the client said %q, want \"connected %d\":\n%s", connected, port, p.output())
		}
		said, _ := rd.ReadString('\n')
		if said != "errno 98\n" {
			t.Fatalf("listen on the port of its own connection: %q, want errno 98 (EADDRINUSE)", said)
		}
		tr.failureBy(t, p.pid())
		stdin.Close()
		p.wait(t, 10*time.Second)
		tr.awaitAbandoned(t, port)
		for _, f := range tr.failed(t, p.pid(), "the client") {
			wantCause(t, f, "ephemeral_port", "")
			holds(t, f, p.pid())
			if lo <= port && port <= hi {
				reserve := regexp.MustCompile(`net\.ipv4\.ip_local_reserved_ports=\S*\b` + strconv.Itoa(port) + `\b`)
				if !reserve.MatchString(f.str("hint")) {
					t.Errorf("the hint has no ip_local_reserved_ports line for port %d (inside %d-%d):\n%s", port, lo, hi, f)
				}
			}
		}
		tr.gaveUp(t, port, "ephemeral_port")
	})
}
