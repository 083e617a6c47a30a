package diagnose

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// edgeCase is one failure at an edge of a rule (a range's ends, a field
// unknown, an argument a process cut short), with what its diagnosis and
// hint must and must not say.
type edgeCase struct {
	name                   string
	port                   uint16
	pid                    int
	holder                 events.Holder
	facts                  Facts
	cause                  string
	diagnosis, notDiagnose []string
	hint, notHint          []string
}

func checkEdges(t *testing.T, cases []edgeCase) {
	t.Helper()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pid := c.pid
			if pid == 0 {
				pid = 500
			}
			if c.pid < 0 {
				pid = 0
			}
			f := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: c.port,
				Process: events.Process{PID: pid, UID: 1000, Comm: "myapp", Exe: "/opt/myapp", Netns: 4026531840}}
			h := c.holder
			h.Source, h.Proto, h.Port = events.SeenLive, "tcp", c.port
			if h.State == "" {
				h.State, h.Addr = "LISTEN", "0.0.0.0"
			}
			f.Holders = []events.Holder{h}
			v := Diagnose(f, c.facts, now)
			if v.Cause != c.cause {
				t.Errorf("cause %q, want %q", v.Cause, c.cause)
			}
			for _, w := range c.diagnosis {
				if !strings.Contains(v.Diagnosis, w) {
					t.Errorf("diagnosis %q\n lacks %q", v.Diagnosis, w)
				}
			}
			for _, w := range c.notDiagnose {
				if strings.Contains(v.Diagnosis, w) {
					t.Errorf("diagnosis %q\n has %q", v.Diagnosis, w)
				}
			}
			for _, w := range c.hint {
				if !strings.Contains(v.Hint, w) {
					t.Errorf("hint %q\n lacks %q", v.Hint, w)
				}
			}
			for _, w := range c.notHint {
				if strings.Contains(v.Hint, w) {
					t.Errorf("hint %q\n has %q", v.Hint, w)
				}
			}
		})
	}
}

// kube-proxy's NodePort note covers the default range's both ends, and
// only it.
func TestKubeProxyNodePortRange(t *testing.T) {
	kp := events.Holder{Processes: []events.Process{{PID: 63, Comm: "kube-proxy"}}}
	var cases []edgeCase
	for port, in := range map[uint16]bool{29999: false, 30000: true, 32767: true, 32768: false} {
		c := edgeCase{name: fmt.Sprint("port ", port), port: port, holder: kp, cause: events.CauseKubeProxy}
		if in {
			c.diagnosis = []string{"lies in the default NodePort range"}
		} else {
			c.notDiagnose = []string{"NodePort range"}
		}
		cases = append(cases, c)
	}
	checkEdges(t, cases)
}

// docker-proxy's arguments are the holder's to write: a container port
// out of range, or a flag whose value was cut off, names no port; the
// container it publishes for is named by its name, else its id.
func TestDockerProxyArgumentEdges(t *testing.T) {
	dp := func(args ...string) events.Holder {
		return events.Holder{Processes: []events.Process{{PID: 61, PPID: 900, Comm: "docker-proxy",
			Cmdline: append([]string{"/usr/bin/docker-proxy", "-host-port", "8080"}, args...)}}}
	}
	generic := []string{"Docker publishes a container's port on it."}
	checkEdges(t, []edgeCase{
		{name: "container port 0", port: 8080, holder: dp("-container-port", "0"), cause: events.CauseDockerProxy, diagnosis: generic},
		{name: "container port 65536", port: 8080, holder: dp("-container-port", "65536"), cause: events.CauseDockerProxy, diagnosis: generic},
		{name: "container port 65535", port: 8080, holder: dp("-container-port", "65535"), cause: events.CauseDockerProxy,
			diagnosis: []string{"Docker publishes port 65535 of a container on it, as docker run -p 8080:65535 does"}},
		{name: "value cut off", port: 8080, holder: dp("-container-ip", "172.17.0.2", "-container-port"), cause: events.CauseDockerProxy, diagnosis: generic},
	})
	named := func(c events.Container) events.Holder {
		h := dp("-container-port", "80")
		h.Processes[0].PublishesFor = &c
		return h
	}
	checkEdges(t, []edgeCase{
		{name: "publishes for a named container", port: 8080, holder: named(events.Container{Name: "web", ID: "f00d"}), cause: events.CauseDockerProxy,
			diagnosis: []string{"Docker publishes port 80 of container web on it"}, hint: []string{"docker stop web"}},
		{name: "publishes for a container known by id", port: 8080, holder: named(events.Container{ID: "f00dcafe"}), cause: events.CauseDockerProxy,
			diagnosis: []string{"port 80 of container f00dcafe on it"}, hint: []string{"docker stop f00dcafe"}},
		{name: "publishes for a container known by neither", port: 8080, holder: named(events.Container{Image: "nginx"}), cause: events.CauseDockerProxy,
			diagnosis: []string{"Docker publishes port 80 of a container on it"}, notHint: []string{"docker stop"}},
	})
}

// An outgoing connection's hint says its TIME_WAIT must end too, unless
// it is already in TIME_WAIT (the diagnosis says how long is left); the
// sysctl command enters the failing process's namespace only when there
// is a process to enter by.
func TestEphemeralHintEdges(t *testing.T) {
	eph := Facts{Ephemeral: EphemeralPorts{Lo: 32768, Hi: 60999}}
	conn := events.Holder{State: "ESTABLISHED", Addr: "10.0.0.2", PeerAddr: "93.184.216.34", PeerPort: 443,
		Processes: []events.Process{{PID: 77, Comm: "curl"}}}
	tw := events.Holder{State: "TIME_WAIT", Addr: "10.0.0.2", PeerAddr: "93.184.216.34", PeerPort: 443, RemainingMS: 5000, Processes: []events.Process{}}
	checkEdges(t, []edgeCase{
		{name: "established", port: 40123, holder: conn, facts: eph, cause: events.CauseEphemeralPort,
			hint: []string{"(and its TIME_WAIT, up to 60 s, ends)", "nsenter --net=/proc/500/ns/net sysctl -w"}},
		{name: "time-wait", port: 40123, holder: tw, facts: eph, cause: events.CauseEphemeralPort,
			notHint: []string{"and its TIME_WAIT"}},
		{name: "no failing pid", port: 40123, pid: -1, holder: conn, facts: eph, cause: events.CauseEphemeralPort,
			hint: []string{"`sysctl -w net.ipv4.ip_local_reserved_ports=40123`"}, notHint: []string{"nsenter"}},
	})
}

// The holder a diagnosis names is the one whose flags do not let the
// failing socket share the port, even when it is not listed first; when
// every holder would let it share, the first is still the best guess. A
// socket the kernel recorded but whose process is not known is said to
// have let go.
func TestBlockingHolderChosen(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	on := true
	sharing := events.Holder{Source: events.SeenLive, Proto: "tcp", State: "BOUND", Addr: "0.0.0.0", Port: 8080, ReuseAddr: &on,
		Processes: []events.Process{{PID: 41, Comm: "sharer"}}}
	blocking := events.Holder{Source: events.SeenLive, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080, ReuseAddr: &on,
		Processes: []events.Process{{PID: 42, Comm: "blocker"}}}
	f := &events.Failure{Syscall: "bind", Errno: "EADDRINUSE", Proto: "tcp", Family: "ipv4", Addr: "0.0.0.0", Port: 8080,
		Socket: events.Socket{ReuseAddr: true}, Process: events.Process{PID: 500, Comm: "myapp"}}
	f.Holders = []events.Holder{sharing, blocking}
	if v := Diagnose(f, Facts{}, now); !strings.Contains(v.Diagnosis, "blocker (pid 42") || strings.Contains(v.Diagnosis, "sharer") {
		t.Errorf("diagnosis %q: want the listening holder named, not the one it could share with", v.Diagnosis)
	}
	f.Holders = []events.Holder{sharing}
	if v := Diagnose(f, Facts{}, now); !strings.Contains(v.Diagnosis, "sharer (pid 41") {
		t.Errorf("diagnosis %q: want the only holder named", v.Diagnosis)
	}
	f.Holders = []events.Holder{{Source: events.Recorded, Proto: "tcp", State: "LISTEN", Addr: "0.0.0.0", Port: 8080, Processes: []events.Process{}}}
	if v := Diagnose(f, Facts{}, now); !strings.Contains(v.Diagnosis, "which has let go of it since") {
		t.Errorf("diagnosis %q: want a recorded holder without a process said to have let go", v.Diagnosis)
	}
}

// EACCES: a port is privileged only below ip_unprivileged_port_start
// (its value itself is not); when the start could not be read, the
// diagnosis says so rather than guess. EADDRNOTAVAIL names the addresses
// there, or says it could not list them.
func TestAccessAndAddressEdges(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	diag := func(errno string, port uint16, facts Facts) Verdict {
		f := &events.Failure{Syscall: "bind", Errno: errno, Proto: "tcp", Family: "ipv4", Addr: "10.9.9.9", Port: port,
			Process: events.Process{PID: 500, Comm: "myapp", Exe: "/opt/myapp"}}
		return Diagnose(f, facts, now)
	}
	for _, c := range []struct {
		port  uint16
		start int
		cause string
		says  string
	}{
		{1023, 1024, events.CausePrivilegedPort, "Port 1023 is privileged"},
		{1024, 1024, events.CauseAccessDenied, "although port 1024 is not privileged there"},
		{80, 0, events.CauseAccessDenied, "which bindwatch could not read"},
	} {
		if v := diag("EACCES", c.port, Facts{UnprivilegedPortStart: c.start}); v.Cause != c.cause || !strings.Contains(v.Diagnosis, c.says) {
			t.Errorf("EACCES on %d (start %d): %s: %q; want %s saying %q", c.port, c.start, v.Cause, v.Diagnosis, c.cause, c.says)
		}
	}
	if v := diag("EADDRNOTAVAIL", 80, Facts{}); !strings.Contains(v.Diagnosis, "bindwatch could not list the addresses there") {
		t.Errorf("no addresses known: %q", v.Diagnosis)
	}
	lo := Facts{Addrs: []LocalAddr{{Addr: netip.MustParseAddr("127.0.0.1"), Iface: "lo"}}}
	if v := diag("EADDRNOTAVAIL", 80, lo); !strings.Contains(v.Diagnosis, "the addresses there are 127.0.0.1 (lo)") {
		t.Errorf("one address known: %q", v.Diagnosis)
	}
}

// A word made only of what container runtimes allow in names is given
// as it is, the range ends included; anything else is quoted.
func TestShellWordEdges(t *testing.T) {
	for _, s := range []string{"a", "z", "A", "Z", "0", "9", "web_1.prod-x"} {
		if got := shellWord(s); got != s {
			t.Errorf("shellWord(%q) = %q, want it as it is", s, got)
		}
	}
	for _, s := range []string{"a b", "x;y", "`id`", "-rf", "@", "[", "{", "/", ":"} {
		if got := shellWord(s); got == s {
			t.Errorf("shellWord(%q) = %q, want it quoted", s, got)
		}
	}
}

// The ephemeral range and the reserved ports include their ends; a range
// is known only when it was read and is not upside down; the reserved
// list keeps what it had when a port is added.
func TestEphemeralPortsEdges(t *testing.T) {
	e := EphemeralPorts{Lo: 32768, Hi: 60999, Reserved: "8080, 9000-9010,bad,7-x"}
	for port, want := range map[int]bool{32767: false, 32768: true, 60999: true, 61000: false} {
		if got := e.InRange(port); got != want {
			t.Errorf("InRange(%d) = %v, want %v", port, got, want)
		}
	}
	for port, want := range map[int]bool{8079: false, 8080: true, 8081: false, 8999: false, 9000: true, 9010: true, 9011: false, 7: false} {
		if got := e.IsReserved(port); got != want {
			t.Errorf("IsReserved(%d) = %v, want %v", port, got, want)
		}
	}
	for _, c := range []struct {
		e     EphemeralPorts
		known bool
	}{{EphemeralPorts{Lo: 1, Hi: 1}, true}, {EphemeralPorts{Lo: 0, Hi: 10}, false}, {EphemeralPorts{Lo: 10, Hi: 9}, false}} {
		if c.e.Known() != c.known || (c.e.InRange(c.e.Lo) && !c.known) {
			t.Errorf("%+v: known %v, want %v", c.e, c.e.Known(), c.known)
		}
	}
	if got := (EphemeralPorts{Lo: 5000, Hi: 5000}).RangeText(); got != "5000" {
		t.Errorf("RangeText of one port = %q", got)
	}
	if got := e.ReserveSetting(40000); got != "net.ipv4.ip_local_reserved_ports=8080, 9000-9010,bad,7-x,40000" {
		t.Errorf("ReserveSetting = %q", got)
	}
}
