package sink

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// ecsFields is rec's ECS document flattened to its dotted field names
// ("server.port"), each value as fmt.Sprint shows its JSON decoding
// (numbers as float64, arrays as [a b]).
func ecsFields(t *testing.T, rec events.Record) map[string]string {
	t.Helper()
	b, err := ECS(rec)
	if err != nil {
		t.Fatalf("ECS(%T): %v", rec, err)
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("ECS(%T) is not one JSON object: %v: %s", rec, err, b)
	}
	flat := map[string]string{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			flat[prefix+k] = fmt.Sprint(v)
		}
	}
	walk("", d)
	return flat
}

// checkFields fails the test for each field of want that doc does not
// have with that value, and each field of absent that it has.
func checkFields(t *testing.T, name string, doc map[string]string, want map[string]any, absent ...string) {
	t.Helper()
	for k, v := range want {
		if got, ok := doc[k]; !ok || got != fmt.Sprint(v) {
			t.Errorf("%s: %s = %q (present %v), want %q", name, k, got, ok, fmt.Sprint(v))
		}
	}
	for _, k := range absent {
		if v, ok := doc[k]; ok {
			t.Errorf("%s: %s = %q, want it absent", name, k, v)
		}
	}
}

// A server's failed bind: the request as the server side, the failing
// process with everything known about it in process.*, group.*,
// container.*, orchestrator.* and bindwatch.process.*, and related.* naming
// every address and user once.
func TestECSFailureServer(t *testing.T) {
	started := time.Date(2026, 3, 1, 10, 0, 0, 5, time.FixedZone("CET", 3600))
	gid := uint32(5)
	f := failure(8080)
	f.Process = events.Process{
		PID: 4242, TID: 4243, PPID: 1, UID: 1000, GID: &gid, Comm: "srv", Exe: "/usr/bin/srv",
		Cmdline: []string{"srv", "--port", "8080"}, StartTime: started,
		CmdlineRedacted: true, CmdlineTruncated: true,
		Cgroup: "/system.slice/srv.service", CgroupID: 77, Netns: 4026531840, NetnsCookie: 9,
		ContainerID: "c0ffee", Unit: "srv.service",
		Pod:          events.Pod{Namespace: "prod", Name: "srv-7d9", UID: "uid-1"},
		PublishesFor: &events.Container{Name: "web"},
	}
	f.Holders = []events.Holder{
		{Addr: "127.0.0.1", Port: 8080, Processes: []events.Process{{PID: 1, User: "alice", UID: 1000}}},
		{Addr: "::1", Port: 8080, Processes: []events.Process{{PID: 2, UID: 0}, {PID: 3, User: "alice"}}},
	}
	doc := ecsFields(t, f)
	checkFields(t, "server failure", doc, map[string]any{
		"event.kind": "event", "event.action": "bind-failed", "event.outcome": "failure",
		"event.category": "[network]", "event.type": "[start]",
		"host.name": "h", "error.code": "EADDRINUSE", "error.message": "address already in use",
		"network.transport": "tcp", "network.type": "ipv4", "network.iana_number": "6",
		"server.ip": "127.0.0.1", "server.address": "127.0.0.1", "server.port": 8080.0,
		"process.pid": 4242.0, "process.thread.id": 4243.0, "process.parent.pid": 1.0,
		"process.name": "srv", "process.executable": "/usr/bin/srv",
		"process.args": "[srv --port 8080]", "process.args_count": 3.0, "process.command_line": "srv --port 8080",
		"process.start": "2026-03-01T09:00:00.000000005Z", "user.id": "1000", "process.user.id": "1000", "group.id": "5", "process.group.id": "5",
		"container.id": "c0ffee", "service.name": "srv.service",
		"orchestrator.type": "kubernetes", "orchestrator.namespace": "prod",
		"orchestrator.resource.type": "pod", "orchestrator.resource.name": "srv-7d9", "orchestrator.resource.id": "uid-1",
		"bindwatch.process.cmdline_redacted": true, "bindwatch.process.cmdline_truncated": true,
		"bindwatch.process.cgroup": "/system.slice/srv.service", "bindwatch.process.cgroup_id": 77.0,
		"bindwatch.process.netns": 4026531840.0, "bindwatch.process.netns_cookie": 9.0,
		"bindwatch.process.publishes_for.name": "web",
		// The failing process's user by uid (no name), then the holders'.
		"related.ip": "[127.0.0.1 ::1]", "related.user": "[1000 alice 0]",
	}, "source.ip", "destination.ip", "destination.port")
}

// What is not known is left out rather than written as zero: no parent,
// start, group, command line, pod or kernel ids. A runtime's container id
// is preferred to the one read from the cgroup.
func TestECSFailureUnknowns(t *testing.T) {
	f := failure(80)
	f.Process = events.Process{PID: 7, Comm: "x", UID: 0, User: "root",
		Container: events.Container{ID: "runtime-id"}, ContainerID: "cgroup-id"}
	doc := ecsFields(t, f)
	checkFields(t, "failure with unknowns", doc, map[string]any{
		"container.id": "runtime-id", "related.user": "[root]", "related.ip": "[127.0.0.1]",
	}, "process.parent.pid", "process.start", "process.args", "process.args_count", "process.command_line",
		"group.id", "process.group.id", "orchestrator.type", "orchestrator.resource.name",
		"bindwatch.process.cmdline_redacted", "bindwatch.process.cmdline_truncated",
		"bindwatch.process.cgroup_id", "bindwatch.process.netns", "bindwatch.process.netns_cookie",
		"bindwatch.process.publishes_for")
}

// An implicit bind (a client's connect) is a connection that could not
// start: its local side is the source, its peer the destination, and
// there is no server side.
func TestECSFailureImplicit(t *testing.T) {
	f := failure(0)
	f.Syscall, f.Addr, f.Proto = "connect", "10.0.0.1", "udp"
	f.Errno, f.ErrnoCode = "EADDRNOTAVAIL", 99
	f.Destination = &events.Destination{IP: "10.0.0.2", Port: 5432}
	doc := ecsFields(t, f)
	checkFields(t, "implicit failure", doc, map[string]any{
		"event.type": "[connection]", "event.action": "connect-failed",
		"network.iana_number": "17",
		"source.ip":           "10.0.0.1", "source.address": "10.0.0.1",
		"destination.ip": "10.0.0.2", "destination.address": "10.0.0.2", "destination.port": 5432.0,
		"error.message": "cannot assign requested address",
	}, "server.ip", "server.address", "server.port")
}

// Folded repeats span their first and last failure when they are known;
// durations are nanoseconds (ECS's event.duration) from bindwatch's
// milliseconds.
func TestECSTimesAndDurations(t *testing.T) {
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &events.Repeats{Count: 9, PID: 3, Comm: "c", Syscall: "listen", Proto: "udp", Port: 53,
		First: first, Last: first.Add(1500 * time.Millisecond)}
	checkFields(t, "repeats", ecsFields(t, r), map[string]any{
		"event.start": "2026-01-02T03:04:05Z", "event.end": "2026-01-02T03:04:06.5Z",
		"event.action": "listen-failed", "bindwatch.repeats.count": 9.0, "network.iana_number": "17", "server.port": 53.0,
	})
	checkFields(t, "repeats without first and last",
		ecsFields(t, &events.Repeats{Count: 2, Syscall: "bind", Proto: "tcp"}), nil, "event.start", "event.end")

	checkFields(t, "stop", ecsFields(t, &events.Stop{DurationMS: 1500}), map[string]any{
		"event.duration": 1.5e9, "event.action": "tracing-stopped", "event.type": "[end]",
	})
	rec := &events.Recovered{Proto: "tcp", Addr: "::", Port: 443, Process: events.Process{PID: 8, Comm: "nginx"}}
	rec.ContentionMS = 250
	checkFields(t, "recovered", ecsFields(t, rec), map[string]any{
		"event.duration": 2.5e8, "server.ip": "::", "server.port": 443.0, "process.pid": 8.0, "network.iana_number": "6",
	})
}

// An incident's outcome is its state: recovered a success, abandoned a
// failure, open unknown; its message says why it was abandoned, when it
// was.
func TestECSIncident(t *testing.T) {
	start := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, c := range []struct {
		state, reason, outcome string
	}{
		{events.IncidentRecovered, "", "success"},
		{events.IncidentAbandoned, "the trace ended", "failure"},
		{events.IncidentOpen, "", "unknown"},
	} {
		in := &events.Incident{Proto: "tcp", Addr: "0.0.0.0", Port: 8080, Start: start, End: start.Add(3 * time.Second),
			State: c.state, AbandonedReason: c.reason, Attempts: 2}
		in.ContentionMS = 3000
		doc := ecsFields(t, in)
		checkFields(t, "incident "+c.state, doc, map[string]any{
			"event.outcome": c.outcome, "event.duration": 3e9,
			"event.start": "2026-05-06T07:08:09Z", "event.end": "2026-05-06T07:08:12Z", "@timestamp": "2026-05-06T07:08:09Z",
			"server.ip": "0.0.0.0", "server.port": 8080.0,
		})
		msg := doc["message"]
		if !strings.HasPrefix(msg, "incident on tcp 0.0.0.0:8080: "+c.state+" after 2 attempts; contention ") {
			t.Errorf("incident %s: message %q", c.state, msg)
		}
		if hasReason := strings.HasSuffix(msg, " ("+c.reason+")"); hasReason != (c.reason != "") {
			t.Errorf("incident %s: message %q, want the abandoned reason %q said at its end", c.state, msg, c.reason)
		}
	}
}

// free says whether it only looked (a dry run: info) or acted (end), and
// succeeded when the port is free; held and wait_free carry the kernel's
// refusal when there was one.
func TestECSDeployRecords(t *testing.T) {
	dry := &events.FreeRecord{PortRecord: events.PortRecord{Port: 80, Proto: "tcp"}, DryRun: true}
	checkFields(t, "free --dry-run", ecsFields(t, dry), map[string]any{
		"event.action": "port-free-dry-run", "event.type": "[info]", "event.category": "[process]",
		"event.outcome": "failure", "server.port": 80.0, "network.iana_number": "6",
	})
	done := &events.FreeRecord{PortRecord: events.PortRecord{Port: 80, Proto: "tcp"}, Free: true}
	checkFields(t, "free", ecsFields(t, done), map[string]any{
		"event.action": "port-free", "event.type": "[end]", "event.category": "[process]", "event.outcome": "success",
	})

	held := &events.HeldRecord{PortRecord: events.PortRecord{Port: 443, Proto: "tcp"}}
	held.Refusal = &events.RefusalRecord{Syscall: "bind", Addr: "192.0.2.1", Errno: "EADDRINUSE"}
	held.Holders = []events.Holder{{Addr: "192.0.2.1", Processes: []events.Process{{User: "www"}}}}
	checkFields(t, "held", ecsFields(t, held), map[string]any{
		"event.kind": "state", "event.action": "port-held", "error.code": "EADDRINUSE", "server.ip": "192.0.2.1",
		"related.ip": "[192.0.2.1]", "related.user": "[www]",
	})
	unheld := &events.HeldRecord{PortRecord: events.PortRecord{Port: 443, Proto: "tcp"}}
	checkFields(t, "held without refusal", ecsFields(t, unheld), nil, "error.code", "server.ip", "related.ip")

	for free, outcome := range map[bool]string{true: "success", false: "failure"} {
		w := &events.WaitFreeRecord{PortRecord: events.PortRecord{Port: 9, Proto: "udp"}, Free: free}
		checkFields(t, fmt.Sprint("wait-free free=", free), ecsFields(t, w), map[string]any{
			"event.action": "port-wait", "event.outcome": outcome, "network.iana_number": "17",
		})
	}
}

// doctor checks the host bindwatch runs on: its document names that host.
func TestECSDoctorHost(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, "doctor", ecsFields(t, &events.Doctor{Kernel: "6.18.0", Arch: "x86_64"}), map[string]any{
		"host.name": host, "host.os.kernel": "6.18.0", "host.architecture": "x86_64", "event.kind": "state",
	})
}

// A record without a mapping of its own keeps its time and host and is
// carried whole under bindwatch.<type>; what is not a record is an error.
func TestECSOtherRecords(t *testing.T) {
	at := time.Date(2026, 7, 8, 9, 10, 11, 0, time.UTC)
	r := &events.OutputLost{Output: "file", Records: 3, Failures: 2, Error: "no space left on device"}
	r.Type, r.Time, r.Host = events.TypeOutputLost, at, "box"
	checkFields(t, "output_lost", ecsFields(t, r), map[string]any{
		"@timestamp": "2026-07-08T09:10:11Z", "host.name": "box", "event.action": "output-lost",
		"event.dataset": "bindwatch.output_lost", "bindwatch.output_lost.records": 3.0, "bindwatch.output_lost.output": "file",
	})
	for _, bad := range []events.Record{&events.OutputLost{Output: "file"}} {
		if b, err := ECS(bad); err == nil {
			t.Errorf("ECS(%#v) = %s, want an error", bad, b)
		}
	}
}

// Every transport bindwatch reports has its IANA number; others none.
func TestECSIANANumbers(t *testing.T) {
	for proto, want := range map[string]string{"tcp": "6", "mptcp": "6", "udp": "17", "sctp": "132", "udplite": "136", "icmp": "1", "raw": ""} {
		if got := ianaNumber(proto); got != want {
			t.Errorf("ianaNumber(%q) = %q, want %q", proto, got, want)
		}
	}
}

// An empty value (ECS's unknown) is left out, and nested objects made
// only for what is set; zero numbers and false are values.
func TestECSDocSet(t *testing.T) {
	d := doc{}
	for name, v := range map[string]any{
		"a.empty": "", "a.nil": nil, "a.nilptr": (*int)(nil), "a.nilslice": []int(nil), "a.nilmap": map[string]int(nil),
		"a.nostrings": []string{}, "a.zerotime": time.Time{},
	} {
		d.set(name, v)
	}
	if len(d) != 0 {
		t.Errorf("empty values set: %v", d)
	}
	d.set("a.b.zero", 0)
	d.set("a.b.no", false)
	d.set("a.s", []string{"x"})
	d.set("top", "t")
	got, _ := json.Marshal(d)
	if want := `{"a":{"b":{"no":false,"zero":0},"s":["x"]},"top":"t"}`; string(got) != want {
		t.Errorf("doc = %s, want %s", got, want)
	}
}
