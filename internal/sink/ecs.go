package sink

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// ECSVersion is the Elastic Common Schema version of the ECS form.
const ECSVersion = "9.4.0"

// ECS is the form of --format ecs: each record as one Elastic Common
// Schema document (docs/ecs.md has the mapping). What ECS has a field for
// goes there — the failing process in process.*, its user in user.*, the
// requested address as the server side, the error in error.code — and what
// it has not (holders, diagnosis, hint, socket options, counts) goes under
// bindwatch.*, in the same shape as the JSON form. A record type without a
// mapping of its own still becomes a document: the common fields, and the
// whole JSON record under bindwatch.<type>.
func ECS(rec events.Record) ([]byte, error) {
	d, err := ecsDoc(rec)
	if err != nil {
		return nil, err
	}
	// The one JSON rule: no raw control character (DEL, C1) in a line.
	b, err := events.MarshalJSON(d)
	if err != nil {
		return nil, fmt.Errorf("encode %T as ECS: %w", rec, err)
	}
	return b, nil
}

// doc is an ECS document under construction: nested objects, set by
// dotted field names.
type doc map[string]any

// set puts v at the dotted name, leaving out empty values (an absent field
// is ECS's "unknown").
func (d doc) set(name string, v any) {
	if isEmpty(v) {
		return
	}
	m := d
	parts := strings.Split(name, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(doc)
		if !ok {
			next = doc{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case time.Time:
		return v.IsZero()
	case []string:
		return len(v) == 0
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		return rv.IsNil()
	}
	return false
}

// jsonValue is v as its JSON form decodes: how bindwatch.* carries
// bindwatch's own objects (holders, socket options), shaped as in the
// JSON records.
func jsonValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// event is the common part of every document: time, version, host, and
// the event.* categorization (values ECS allows).
func event(t time.Time, host, typ, kind, action, outcome string, category, eventType []string) doc {
	d := doc{}
	d.set("@timestamp", t.UTC().Format(time.RFC3339Nano))
	d.set("ecs.version", ECSVersion)
	d.set("event.kind", kind)
	d.set("event.category", category)
	d.set("event.type", eventType)
	d.set("event.action", action)
	d.set("event.outcome", outcome)
	d.set("event.module", "bindwatch")
	d.set("event.dataset", "bindwatch."+typ)
	if host == "" { // doctor's record: the host bindwatch runs on
		host, _ = os.Hostname()
	}
	d.set("host.name", host)
	d.set("host.hostname", host)
	d.set("bindwatch.type", typ)
	return d
}

func ecsDoc(rec events.Record) (doc, error) {
	if d, _ := mappedDoc(rec); d != nil {
		return d, nil
	}
	return recordDoc(rec)
}

// mappedDoc is rec's document where ECS has fields for what it says, nil
// for a record carried whole under bindwatch.<type> (recordDoc); known
// is false for a record type it does not know, which
// TestFormsKnowEveryRecord catches.
func mappedDoc(rec events.Record) (d doc, known bool) {
	switch r := rec.(type) {
	case *events.OutputLost, *events.Released, *events.Signal, *events.SignalRepeats, *events.PortFree,
		*events.Abandoned, *events.IncidentUntracked, *events.Spread:
		return nil, true
	case *events.Failure:
		return failureDoc(r), true
	case *events.Repeats:
		d := event(r.Time, r.Host, r.Type, "event", r.Syscall+"-failed", "failure", []string{"network"}, []string{"start"})
		d.set("message", events.Text(r))
		d.set("error.code", r.Errno)
		d.set("process.pid", r.PID)
		d.set("process.name", r.Comm)
		d.set("network.transport", r.Proto)
		d.set("network.iana_number", ianaNumber(r.Proto))
		d.set("server.port", r.Port)
		d.set("bindwatch.syscall", r.Syscall)
		d.set("bindwatch.repeats.count", r.Count)
		// When the folded failures happened: first and last bound them.
		if !r.First.IsZero() {
			d.set("event.start", r.First.UTC().Format(time.RFC3339Nano))
		}
		if !r.Last.IsZero() {
			d.set("event.end", r.Last.UTC().Format(time.RFC3339Nano))
		}
		return d, true
	case *events.Lost:
		d := event(r.Time, r.Host, r.Type, "event", "failures-lost", "unknown", []string{"network"}, []string{"info"})
		d.set("message", events.Text(r))
		d.set("bindwatch.lost.count", r.Count)
		if r.IncidentRecords > 0 {
			d.set("bindwatch.lost.incident_records", r.IncidentRecords)
		}
		return d, true
	case *events.Start:
		d := event(r.Time, r.Host, r.Type, "event", "tracing-started", "success", []string{"process"}, []string{"start"})
		d.set("message", events.Text(r))
		d.set("process.pid", r.PID)
		d.set("process.name", "bindwatch")
		d.set("host.os.kernel", r.Kernel)
		d.set("bindwatch.start", jsonValue(r))
		return d, true
	case *events.Stop:
		d := event(r.Time, r.Host, r.Type, "event", "tracing-stopped", "success", []string{"process"}, []string{"end"})
		d.set("message", events.Text(r))
		d.set("event.duration", r.DurationMS*int64(time.Millisecond))
		d.set("bindwatch.stop", jsonValue(r))
		return d, true
	case *events.Doctor:
		d := event(time.Now(), "", r.Type, "state", "host-check", "", []string{"host"}, []string{"info"})
		d.set("host.os.kernel", r.Kernel)
		d.set("host.architecture", r.Arch)
		d.set("bindwatch.doctor", jsonValue(r))
		return d, true
	case *events.Who:
		d := event(r.Time, r.Host, r.Type, "state", "port-lookup", "", []string{"network"}, []string{"info"})
		d.set("network.transport", r.Proto)
		d.set("network.iana_number", ianaNumber(r.Proto))
		d.set("server.port", r.Port)
		d.set("bindwatch.who", jsonValue(r))
		relate(d, "", r.Holders)
		return d, true
	case *events.HeldRecord:
		d := portDoc(&r.PortRecord, "state", "port-held", "", []string{"info"})
		holdState(d, &r.HoldState)
		d.set("bindwatch.held", jsonValue(r))
		return d, true
	case *events.WaitFreeRecord:
		d := portDoc(&r.PortRecord, "event", "port-wait", outcome(r.Free), []string{"info"})
		holdState(d, &r.HoldState)
		d.set("bindwatch.wait_free", jsonValue(r))
		return d, true
	case *events.Recovered:
		d := event(r.Time, r.Host, r.Type, "event", "port-recovered", "success", []string{"network"}, []string{"start"})
		d.set("message", events.Text(r))
		d.set("event.duration", r.ContentionMS*int64(time.Millisecond))
		portOf(d, r.Proto, r.Addr, r.Port)
		process(d, "process", &r.Process)
		d.set("bindwatch.recovered", jsonValue(r))
		return d, true
	case *events.PortShared:
		// Silent sharing: nothing failed, which is the point; an alert
		// for a SIEM (a same-user process taking a share of a port).
		d := event(r.Time, r.Host, r.Type, "alert", "port-shared", "success", []string{"network"}, []string{"connection", "info"})
		d.set("message", events.Text(r))
		portOf(d, r.Proto, r.Addr, r.Port)
		process(d, "process", &r.Joiner)
		processExtras(d, "bindwatch.process", &r.Joiner)
		relate(d, r.Addr, nil, r.Joiner, r.Holder)
		d.set("bindwatch.port_shared", jsonValue(r))
		return d, true
	case *events.Incident:
		// The incident as a whole: from its first failure (@timestamp,
		// event.start) to its end; event.duration is the contention (the
		// outage, unserved_ms, is under bindwatch.incident).
		outcome := "unknown"
		switch r.State {
		case events.IncidentRecovered:
			outcome = "success"
		case events.IncidentAbandoned:
			outcome = "failure"
		}
		d := event(r.Start, r.Host, r.Type, "event", "port-incident", outcome, []string{"network"}, []string{"info"})
		d.set("message", incidentMessage(r))
		d.set("event.start", r.Start.UTC().Format(time.RFC3339Nano))
		d.set("event.end", r.End.UTC().Format(time.RFC3339Nano))
		d.set("event.duration", r.ContentionMS*int64(time.Millisecond))
		portOf(d, r.Proto, r.Addr, r.Port)
		d.set("bindwatch.incident", jsonValue(r))
		return d, true
	case *events.FreeRecord:
		action, category, typ := "port-free-dry-run", []string{"process"}, []string{"info"}
		if !r.DryRun {
			action, typ = "port-free", []string{"end"}
		}
		d := portDoc(&r.PortRecord, "event", action, outcome(r.Free), typ)
		d.set("event.category", category)
		relate(d, "", r.Holders)
		d.set("bindwatch.free", jsonValue(r))
		return d, true
	}
	return nil, false
}

// recordDoc is the document of a record ECS has no fields for: the
// common fields, and the record as its JSON form says it.
func recordDoc(rec events.Record) (doc, error) {
	v, ok := jsonValue(rec).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("encode %T as ECS: not a record", rec)
	}
	typ, _ := v["type"].(string)
	if typ == "" {
		return nil, fmt.Errorf("encode %T as ECS: a record without a type", rec)
	}
	host, _ := v["host"].(string)
	t := time.Now()
	if s, ok := v["time"].(string); ok {
		if parsed, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t = parsed
		}
	}
	d := event(t, host, typ, "event", strings.ReplaceAll(typ, "_", "-"), "", []string{"network"}, []string{"info"})
	d.set("message", events.Text(rec))
	d.set("bindwatch."+typ, v)
	return d, nil
}

func outcome(ok bool) string {
	if ok {
		return "success"
	}
	return "failure"
}

// failureDoc maps a failed bind()/listen(): the failing process, its
// user and container, the request as the server side of the network
// event, and the error.
func failureDoc(f *events.Failure) doc {
	// An implicit bind (connect, sendto) is a client's connection that
	// could not start: its local side is the source, its peer the
	// destination. bind() and listen() are a server's start.
	implicit := f.Destination != nil
	eventType := "start"
	if implicit {
		eventType = "connection"
	}
	d := event(f.Time, f.Host, f.Type, "event", f.Syscall+"-failed", "failure", []string{"network"}, []string{eventType})
	d.set("message", events.Text(f))
	d.set("error.code", f.Errno)
	d.set("error.message", syscall.Errno(f.ErrnoCode).Error())
	d.set("network.transport", f.Proto)
	d.set("network.type", f.Family)
	d.set("network.iana_number", ianaNumber(f.Proto))
	if implicit {
		if a, err := netip.ParseAddr(f.Addr); err == nil {
			d.set("source.ip", a.String())
			d.set("source.address", a.String())
		}
		if a, err := netip.ParseAddr(f.Destination.IP); err == nil {
			d.set("destination.ip", a.String())
			d.set("destination.address", a.String())
		}
		d.set("destination.port", f.Destination.Port)
		d.set("bindwatch.local_ports", jsonValue(f.LocalPorts))
	} else {
		if a, err := netip.ParseAddr(f.Addr); err == nil {
			d.set("server.ip", a.String())
			d.set("server.address", a.String())
		}
		d.set("server.port", f.Port)
	}
	process(d, "process", &f.Process)
	d.set("process.thread.id", f.Process.TID)
	d.set("user.id", strconv.FormatUint(uint64(f.Process.UID), 10))
	d.set("user.name", f.Process.User)
	if f.Process.GID != nil {
		d.set("group.id", strconv.FormatUint(uint64(*f.Process.GID), 10))
		d.set("process.group.id", strconv.FormatUint(uint64(*f.Process.GID), 10))
	}
	containerOf(d, &f.Process)
	d.set("service.name", f.Process.Unit)

	d.set("bindwatch.backend", f.Backend)
	d.set("bindwatch.hook", f.Hook)
	d.set("bindwatch.syscall", f.Syscall)
	d.set("bindwatch.errno_code", f.ErrnoCode)
	d.set("bindwatch.socket", jsonValue(f.Socket))
	d.set("bindwatch.holders", jsonValue(f.Holders))
	d.set("bindwatch.time_wait", jsonValue(f.TimeWait))
	d.set("bindwatch.cause", f.Cause)
	d.set("bindwatch.confidence", f.Confidence)
	d.set("bindwatch.diagnosis", f.Diagnosis)
	d.set("bindwatch.hint", f.Hint)
	processExtras(d, "bindwatch.process", &f.Process)
	relate(d, f.Addr, f.Holders, f.Process)
	return d
}

// process maps one process to ECS's process fields at prefix ("process").
func process(d doc, prefix string, p *events.Process) {
	d.set(prefix+".pid", p.PID)
	d.set(prefix+".name", p.Comm)
	d.set(prefix+".executable", p.Exe)
	d.set(prefix+".args", p.Cmdline)
	if len(p.Cmdline) > 0 {
		d.set(prefix+".args_count", len(p.Cmdline))
		d.set(prefix+".command_line", strings.Join(p.Cmdline, " "))
	}
	if !p.StartTime.IsZero() {
		d.set(prefix+".start", p.StartTime.UTC().Format(time.RFC3339Nano))
	}
	if p.PPID != 0 {
		d.set(prefix+".parent.pid", p.PPID)
	}
	d.set(prefix+".user.id", strconv.FormatUint(uint64(p.UID), 10))
	d.set(prefix+".user.name", p.User)
}

// processExtras is what ECS has no field for, under bindwatch.process.
func processExtras(d doc, prefix string, p *events.Process) {
	if p.CmdlineRedacted {
		d.set(prefix+".cmdline_redacted", true)
	}
	if p.CmdlineTruncated {
		d.set(prefix+".cmdline_truncated", true)
	}
	d.set(prefix+".cgroup", p.Cgroup)
	d.set(prefix+".unit_manager", p.UnitManager)
	d.set(prefix+".socket_unit", p.SocketUnit)
	if p.CgroupID != 0 {
		d.set(prefix+".cgroup_id", p.CgroupID)
	}
	if p.Netns != 0 {
		d.set(prefix+".netns", p.Netns)
	}
	if p.NetnsCookie != 0 {
		d.set(prefix+".netns_cookie", p.NetnsCookie)
	}
	d.set(prefix+".cap_net_bind_service", p.CapNetBindService)
	if p.PublishesFor != nil {
		d.set(prefix+".publishes_for", jsonValue(p.PublishesFor))
	}
}

// containerOf maps the process's container and Kubernetes pod.
func containerOf(d doc, p *events.Process) {
	id := p.Container.ID
	if id == "" {
		id = p.ContainerID
	}
	d.set("container.id", id)
	d.set("container.name", p.Container.Name)
	d.set("container.runtime", p.Container.Runtime)
	d.set("container.image.name", p.Container.Image)
	if p.Pod.Name != "" {
		d.set("orchestrator.type", "kubernetes")
		d.set("orchestrator.namespace", p.Pod.Namespace)
		d.set("orchestrator.resource.type", "pod")
		d.set("orchestrator.resource.name", p.Pod.Name)
		d.set("orchestrator.resource.id", p.Pod.UID)
	}
}

// portOf maps the port of an incident record as the server side.
func portOf(d doc, proto, addr string, port uint16) {
	d.set("network.transport", proto)
	d.set("network.iana_number", ianaNumber(proto))
	if a, err := netip.ParseAddr(addr); err == nil {
		d.set("server.ip", a.String())
		d.set("server.address", a.String())
	}
	d.set("server.port", port)
}

// incidentMessage is an incident's one line: its port, its end and its
// durations ("outage" is unserved_ms only).
func incidentMessage(in *events.Incident) string {
	s := fmt.Sprintf("incident on %s %s: %s after %d attempt%s; %s", in.Proto, events.HostPort(in.Addr, in.Port), in.State,
		in.Attempts, events.Plural(in.Attempts), events.DurationsText(in.Durations))
	if in.AbandonedReason != "" {
		s += " (" + in.AbandonedReason + ")"
	}
	return s
}

// portDoc is the common part of free, held and wait_free documents: the
// port checked, as the server side.
func portDoc(r *events.PortRecord, kind, action, outcome string, eventType []string) doc {
	d := event(r.Time, r.Host, r.Type, kind, action, outcome, []string{"network"}, eventType)
	d.set("network.transport", r.Proto)
	d.set("network.iana_number", ianaNumber(r.Proto))
	d.set("server.port", r.Port)
	return d
}

// holdState maps who holds a port, as a held or wait_free record says it.
func holdState(d doc, h *events.HoldState) {
	if h.Refusal != nil {
		d.set("error.code", h.Refusal.Errno)
		if a, err := netip.ParseAddr(h.Refusal.Addr); err == nil {
			d.set("server.ip", a.String())
		}
	}
	relate(d, "", h.Holders)
}

// relate fills related.ip and related.user: the requested address and
// the holders' addresses, the users of the failing and holding processes.
func relate(d doc, addr string, holders []events.Holder, procs ...events.Process) {
	var ips, users []string
	addIP := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(ips, a.String()) {
			ips = append(ips, a.String())
		}
	}
	addUser := func(p *events.Process) {
		u := p.User
		if u == "" {
			u = strconv.FormatUint(uint64(p.UID), 10)
		}
		if !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	addIP(addr)
	for i := range procs {
		addUser(&procs[i])
	}
	for _, h := range holders {
		addIP(h.Addr)
		for i := range h.Processes {
			addUser(&h.Processes[i])
		}
	}
	d.set("related.ip", ips)
	d.set("related.user", users)
}

// ianaNumber is the IANA protocol number of a transport, as ECS wants
// it in network.iana_number; "" when there is none.
func ianaNumber(proto string) string {
	switch proto {
	case "tcp", "mptcp": // MPTCP runs over TCP segments
		return "6"
	case "udp":
		return "17"
	case "sctp":
		return "132"
	case "udplite":
		return "136"
	case "icmp":
		return "1"
	}
	return ""
}
