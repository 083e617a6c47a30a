package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/resolve"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check this host: kernel, BTF, lockdown, tracefs, privileges, and which backends really work",
		Description: `Loads and attaches every backend for real (then detaches it) and says which
work here and why the others do not — the same order --backend auto uses.
It also checks the ephemeral port range of its network namespace
(net.ipv4.ip_local_port_range, less ip_local_reserved_ports): TCP ports
listened on inside it, which an outgoing connect() may take while their
server restarts, and an overlap with the Kubernetes NodePort range
(30000-32767); each finding comes with the sysctl that fixes it. Run it in a
container's namespace with nsenter --net=... to check that one.
Exit status: 0 when at least one backend works, 1 when none does (the range
check never changes it).

Example:
  sudo bindwatch doctor
  sudo bindwatch doctor --format json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text, json (one object) or ecs (an Elastic Common Schema document). Default: text on a terminal, json otherwise"},
		},
		Action: doctorAction,
	}
}

func doctorAction(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("doctor takes no arguments, got %q (it checks this whole host: bindwatch doctor [--format json])", c.Args().First())
	}
	env, err := newCommandEnv(c, setup{})
	if err != nil {
		return err
	}
	format := env.format
	var u unix.Utsname
	unix.Uname(&u)
	r := events.Doctor{
		Type:       events.TypeDoctor,
		Version:    events.Version,
		Bindwatch:  version,
		Kernel:     unix.ByteSliceToString(u.Release[:]),
		Arch:       unix.ByteSliceToString(u.Machine[:]),
		BTF:        fileState("/sys/kernel/btf/vmlinux", "present", "missing: CO-RE needs CONFIG_DEBUG_INFO_BTF=y"),
		Lockdown:   lockdown(),
		Privileges: privileges(),
		Backends:   map[string]string{},
	}
	r.Hooks = map[string]*events.DoctorHooks{}
	for _, b := range tracer.Backends() {
		r.Order = append(r.Order, b.Name())
		h, err := tracer.Hooks(b)
		if err != nil {
			h.Error = err.Error()
		}
		r.Hooks[b.Name()] = &h
	}
	for _, st := range tracer.Probe() {
		if st.Err == nil {
			r.Backends[st.Name] = "ok"
			if r.Auto == "" {
				r.Auto = st.Name
			}
		} else {
			r.Backends[st.Name] = st.Err.Error()
		}
	}
	r.Ephemeral = ephemeralCheck()
	r.ClientImpact = tracer.ClientImpact()
	r.Tracefs = tracefsState() // after Probe: the tracepoint backend mounts it if absent
	// As who, free and wait-free find them.
	if res, err := resolve.New(resolve.Options{SharedIterators: true}); err == nil {
		method, why := res.OwnerLookup()
		r.Owners = method
		if from := res.SharedIteratorsFrom(); from != "" {
			r.Owners += " (shared by a bindwatch tracer in " + from + ")"
		}
		if why != nil && tracer.CheckPrivileges() != nil {
			why = errors.New("BPF iterators need CAP_BPF and CAP_PERFMON (root has them); without it only the processes whose fds bindwatch may read are found")
		}
		if why != nil {
			r.Owners += " (" + why.Error() + ")"
		}
		res.Close()
	}
	if format != events.FormatText {
		write, err := recordWriter(os.Stdout, format)
		if err != nil {
			return err
		}
		if err := write(&r); err != nil {
			return err
		}
	} else {
		r.WriteText(os.Stdout)
	}
	if r.Auto == "" {
		return cli.Exit("", 1)
	}
	return nil
}

func fileState(path, yes, no string) string {
	if _, err := os.Stat(path); err == nil {
		return yes + " (" + path + ")"
	}
	return no
}

// lockdown is the kernel's lockdown mode, as doctor says it.
func lockdown() string {
	mode, err := host.Lockdown()
	if err != nil {
		if os.Geteuid() != 0 {
			return "unknown (securityfs is not mounted, and mounting it to look needs root)"
		}
		return "unknown (" + err.Error() + ")"
	}
	return mode
}

func tracefsState() string {
	if p := host.Tracefs(); p != "" {
		return "mounted at " + p
	}
	return "not mounted (the tracepoint backend mounts it at /sys/kernel/tracing when it can)"
}

func privileges() string {
	if err := requireRoot(); err != nil {
		return "insufficient: " + err.Error()
	}
	caps := allCaps
	if host.HasCap(host.CapSysAdmin) { // stands for CAP_BPF and CAP_PERFMON
		caps = caps[2:]
	}
	missing := host.MissingCaps(caps...)
	switch {
	case missing == "" && os.Geteuid() == 0:
		return "root"
	case missing == "":
		return "every capability bindwatch uses"
	}
	return "enough to trace; without " + missing + " (README.md, Install, says what each is for)"
}

// allCaps are the capabilities some command of bindwatch uses (README.md,
// Install).
var allCaps = []int{host.CapBPF, host.CapPerfmon, host.CapSysPtrace, host.CapDACReadSearch, host.CapKill, host.CapNetAdmin, host.CapSysAdmin}

// The Kubernetes NodePort range (kube-apiserver --service-node-port-range
// default).
const nodePortLo, nodePortHi = 30000, 32767

// ephemeralCheck checks the ephemeral port range of doctor's network
// namespace against the TCP ports listened on there and the Kubernetes
// NodePort range. Its work is bounded by the number of sockets (one pass
// over /proc/net/tcp{,6}) and its memory by the port space.
func ephemeralCheck() *events.DoctorEphemeral {
	e, err := readEphemeral()
	if err != nil {
		return &events.DoctorEphemeral{Listeners: []int{}, Advice: []string{}, Error: err.Error() + "; doctor cannot check the range against listeners and NodePorts"}
	}
	r := &events.DoctorEphemeral{Lo: e.Lo, Hi: e.Hi, Reserved: e.Reserved, Listeners: []int{}, Advice: []string{}}
	var listening [65536 / 64]uint64
	var errs []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := tcpListeners(f, &listening); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err.Error())
		}
	}
	var exposed []string
	for p := e.Lo; p <= e.Hi && p < 65536; p++ {
		if listening[p/64]&(1<<(p%64)) == 0 || !e.Exposed(p) {
			continue
		}
		if len(r.Listeners) < events.DoctorListenersMax {
			r.Listeners = append(r.Listeners, p)
			exposed = append(exposed, strconv.Itoa(p))
		} else {
			r.ListenersMore++
		}
	}
	if len(r.Listeners) > 0 {
		more := ""
		if r.ListenersMore > 0 {
			more = fmt.Sprintf(" and %d more", r.ListenersMore)
		}
		r.Advice = append(r.Advice, fmt.Sprintf("TCP port(s) %s%s listen inside the ephemeral range %s and are not reserved: while such a server is down (a restart), an outgoing connect() may take its port as the local port, and the server then fails with EADDRINUSE (cause ephemeral_port). For a server on a fixed port, reserve it: `sysctl -w %s` (persist it in /etc/sysctl.d), or move the range away from it with net.ipv4.ip_local_port_range; a server that binds port 0 needs nothing.",
			strings.Join(exposed, ","), more, e.RangeText(), reserveList(e.Reserved, strings.Join(exposed, ","))))
	}
	first, last := 0, 0
	for p := max(e.Lo, nodePortLo); p <= min(e.Hi, nodePortHi); p++ {
		if e.Exposed(p) {
			if first == 0 {
				first = p
			}
			last = p
		}
	}
	if first != 0 {
		r.NodePortOverlap = fmt.Sprintf("%d–%d", first, last)
		if e.Lo >= nodePortLo && e.Hi <= nodePortHi {
			// Reserving the NodePorts would leave connect() no port at all.
			r.Advice = append(r.Advice, fmt.Sprintf("the ephemeral range %s lies inside the Kubernetes NodePort range %d–%d: on a Kubernetes node an outgoing connect() may take a NodePort's port, and the Service's port cannot be opened while it holds it. Move the range above %d (`sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\"`, the kernel's default); reserving the NodePorts instead would leave connect() no local port. Not a Kubernetes node: nothing to do.",
				e.RangeText(), nodePortLo, nodePortHi, nodePortHi))
		} else {
			r.Advice = append(r.Advice, fmt.Sprintf("the ephemeral range %s overlaps the Kubernetes NodePort range %d–%d at %s (not reserved): on a Kubernetes node an outgoing connect() may take a NodePort's port, and the Service's port cannot be opened while it holds it. Start the range above %d (`sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\"`, the kernel's default), or reserve the NodePorts: `sysctl -w %s`. Not a Kubernetes node: nothing to do.",
				e.RangeText(), nodePortLo, nodePortHi, r.NodePortOverlap, nodePortHi, reserveList(e.Reserved, fmt.Sprintf("%d-%d", nodePortLo, nodePortHi))))
		}
	}
	if len(errs) > 0 {
		r.Error = "listeners not all read: " + strings.Join(errs, "; ")
	}
	return r
}

// reserveList is the sysctl setting that adds ports to the reserved ones,
// keeping those already reserved.
func reserveList(reserved, ports string) string {
	if r := strings.TrimSpace(reserved); r != "" {
		ports = r + "," + ports
	}
	return "net.ipv4.ip_local_reserved_ports=" + ports
}

// readEphemeral reads the range and reserved ports of doctor's own network
// namespace.
func readEphemeral() (diagnose.EphemeralPorts, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return diagnose.EphemeralPorts{}, fmt.Errorf("read net.ipv4.ip_local_port_range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return diagnose.EphemeralPorts{}, fmt.Errorf("net.ipv4.ip_local_port_range %q: want two numbers", b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo <= 0 || hi < lo {
		return diagnose.EphemeralPorts{}, fmt.Errorf("net.ipv4.ip_local_port_range %q: want two numbers, low then high", b)
	}
	res, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports")
	return diagnose.EphemeralPorts{Lo: lo, Hi: hi, Reserved: strings.TrimSpace(string(res))}, nil
}

// tcpListeners marks in set the local port of every LISTEN socket (state
// 0A) in path, /proc/net/tcp or tcp6.
func tcpListeners(path string, set *[65536 / 64]uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		_, port, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			continue
		}
		set[p/64] |= 1 << (p % 64)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
