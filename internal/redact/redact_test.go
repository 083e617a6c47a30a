package redact

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
)

func TestArgs(t *testing.T) {
	for _, c := range []struct {
		in, want []string
	}{
		{[]string{"app", "--password", "hunter2"}, []string{"app", "--password", Mask}},
		{[]string{"app", "--password=hunter2"}, []string{"app", "--password=" + Mask}},
		{[]string{"app", "--PassWd", "x1"}, []string{"app", "--PassWd", Mask}},
		{[]string{"env", "TOKEN=abc123", "API_KEY=k", "DB_SECRET=s", "Credentials=c", "auth=a"},
			[]string{"env", "TOKEN=" + Mask, "API_KEY=" + Mask, "DB_SECRET=" + Mask, "Credentials=" + Mask, "auth=" + Mask}},
		{[]string{"java", "-Dspring.datasource.password=pw=with=equals", "-jar", "app.jar"},
			[]string{"java", "-Dspring.datasource.password=" + Mask, "-jar", "app.jar"}},
		{[]string{"psql", "postgres://user:secret@db:5432/app"}, []string{"psql", "postgres://user:" + Mask + "@db:5432/app"}},
		{[]string{"app", "--db=mysql://root:p%40ss@10.0.0.1/x"}, []string{"app", "--db=mysql://root:" + Mask + "@10.0.0.1/x"}},
		// A secret flag followed by another flag has no value to remove.
		{[]string{"app", "--no-auth", "--port", "8080"}, []string{"app", "--no-auth", "--port", "8080"}},
		// Nothing secret: returned as is.
		{[]string{"java", "-cp", "a.jar:b.jar", "com.example.Main", "--server.port=8080"},
			[]string{"java", "-cp", "a.jar:b.jar", "com.example.Main", "--server.port=8080"}},
		{[]string{"curl", "http://example.com:8080/a@b"}, []string{"curl", "http://example.com:8080/a@b"}},
		{[]string{"tokenizer", "input.txt"}, []string{"tokenizer", "input.txt"}}, // not a flag, no '='
		// A removed value is removed wherever it is repeated.
		{[]string{"app", "--token", "s3cr3t-value", "--log", "/var/log/s3cr3t-value.log"},
			[]string{"app", "--token", Mask, "--log", "/var/log/" + Mask + ".log"}},
		// An argument that is a command line: its words follow the same rules.
		{[]string{"sh", "-c", "exec app --password hunter2 --db=postgres://u:pw@db/x\tTOKEN=t0k"},
			[]string{"sh", "-c", "exec app --password " + Mask + " --db=postgres://u:" + Mask + "@db/x\tTOKEN=" + Mask}},
		// A truncated command line's gap is not a value.
		{[]string{"app", "--password", "…", "tail"}, []string{"app", "--password", "…", "tail"}},
		{nil, nil},
	} {
		got, removed := (*Rules)(nil).Args(c.in)
		if !slices.Equal(got, c.want) {
			t.Errorf("Args(%q) = %q, want %q", c.in, got, c.want)
		}
		if changed := !slices.Equal(c.in, c.want); changed != (len(removed) > 0) {
			t.Errorf("Args(%q) removed %q", c.in, removed)
		}
	}
}

func TestArgsDoesNotChangeItsInput(t *testing.T) {
	in := []string{"app", "--password", "hunter2"}
	(*Rules)(nil).Args(in)
	if in[2] != "hunter2" {
		t.Errorf("input changed: %q", in)
	}
}

func TestExtraPatterns(t *testing.T) {
	r, err := New([]string{`^-p(.+)$`, `sk_live_[0-9a-z]+`})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.Args([]string{"mysql", "-phunter2", "--stripe", "sk_live_abc123", "-u", "root"})
	want := []string{"mysql", "-p" + Mask, "--stripe", Mask, "-u", "root"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{`(`, `a*`} {
		if _, err := New([]string{bad}); err == nil || !strings.Contains(err.Error(), "--redact") {
			t.Errorf("New(%q) = %v, want an error naming --redact", bad, err)
		}
	}
}

func TestOff(t *testing.T) {
	in := []string{"app", "--password", "hunter2"}
	if got, removed := Off().Args(in); !slices.Equal(got, in) || removed != nil {
		t.Errorf("Off().Args = %q, %q", got, removed)
	}
	p := events.Process{Cmdline: in}
	Off().Process(&p)
	if p.CmdlineRedacted || p.Cmdline[2] != "hunter2" {
		t.Errorf("Off().Process = %+v", p)
	}
}

// Nothing else in a process's record tells what was removed.
func TestProcessScrubsEveryField(t *testing.T) {
	p := events.Process{
		Comm:    "hunter2",
		Exe:     "/opt/hunter2/bin/app",
		Cgroup:  "/system.slice/hunter2.service",
		Cmdline: []string{"/opt/hunter2/bin/app", "--password", "hunter2"},
	}
	(*Rules)(nil).Process(&p)
	for _, s := range append([]string{p.Comm, p.Exe, p.Cgroup}, p.Cmdline...) {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q survived redaction: %+v", s, p)
		}
	}
	if !p.CmdlineRedacted {
		t.Error("CmdlineRedacted not set")
	}
	clean := events.Process{Comm: "nginx", Cmdline: []string{"nginx", "-g", "daemon off;"}}
	(*Rules)(nil).Process(&clean)
	if clean.CmdlineRedacted {
		t.Error("CmdlineRedacted set on a command line with no secret")
	}
}

// A removed value of three bytes is searched for in the rest of the record;
// a shorter one, which would match all over paths and names, is not.
func TestScrubShortestValue(t *testing.T) {
	got := Scrub("/srv/abc/xy/app", []string{"abc", "xy"})
	if want := "/srv/" + Mask + "/xy/app"; got != want {
		t.Errorf("Scrub = %q, want %q (values of 3 bytes or more removed, shorter kept)", got, want)
	}
	p := events.Process{Exe: "/opt/pw1/app", Cmdline: []string{"/opt/pw1/app", "--password", "pw1"}}
	(*Rules)(nil).Process(&p)
	if strings.Contains(p.Exe, "pw1") {
		t.Errorf("a 3-byte secret survived in the executable: %q", p.Exe)
	}
}

// A record read back from a log written without redaction: its processes
// are redacted, and the diagnosis and hint made from them scrubbed of what
// was removed.
func TestRecordScrubsDiagnosisAndHint(t *testing.T) {
	f := &events.Failure{
		Process:   events.Process{Comm: "app", Cmdline: []string{"app", "--password", "hunter2"}},
		Holders:   []events.Holder{{Processes: []events.Process{{Comm: "old", Cmdline: []string{"old", "--token=t0ken-old"}}}}},
		Diagnosis: "Port 80/tcp is held by old (old --token=t0ken-old); app (app --password hunter2) failed.",
		Hint:      "Stop `old --token=t0ken-old`, then run `app --password hunter2` again.",
	}
	(*Rules)(nil).Record(f)
	for _, s := range []string{f.Diagnosis, f.Hint, strings.Join(f.Process.Cmdline, " "), strings.Join(f.Holders[0].Processes[0].Cmdline, " ")} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "t0ken-old") {
			t.Errorf("a secret survived Record: %q", s)
		}
	}
	if !strings.Contains(f.Diagnosis, "--token="+Mask) || !strings.Contains(f.Hint, "--password "+Mask) {
		t.Errorf("diagnosis %q / hint %q: want the secrets masked in place", f.Diagnosis, f.Hint)
	}
}

// Every record report reads has each of its processes redacted: a record
// type added with a process fails here until Record scrubs it.
func TestRecordScrubsEveryRecord(t *testing.T) {
	notRead := []string{events.TypeWho, events.TypeFree, events.TypeHeld, events.TypeWaitFree, events.TypeDoctor,
		events.TypeIncident, events.TypeSpread}
	for _, typ := range events.RecordTypes() {
		rec, err := events.Decode([]byte(`{"type":"` + typ + `","version":1}`))
		if err != nil {
			t.Fatal(err)
		}
		withSecrets(reflect.ValueOf(rec).Elem())
		(*Rules)(nil).Record(rec)
		b, _ := events.MarshalJSON(rec)
		leaked := strings.Contains(string(b), "hunter2")
		switch {
		case leaked && !slices.Contains(notRead, typ):
			t.Errorf("%s: a secret survived Record: %s (hint: scrub its processes in redact.Record)", typ, b)
		case !leaked && slices.Contains(notRead, typ) && strings.Contains(string(b), `"cmdline"`):
			t.Errorf("%s is listed as not read back by report, but Record redacted it: take it off the list", typ)
		}
	}
}

// withSecrets gives every process in v (a record, as reflection walks it)
// a command line with a password, and every optional one a process.
func withSecrets(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem() == reflect.TypeOf(events.Process{}) && v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		if !v.IsNil() {
			withSecrets(v.Elem())
		}
	case reflect.Slice:
		if v.Len() == 0 && v.Type().Elem().Kind() == reflect.Struct {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		for i := range v.Len() {
			withSecrets(v.Index(i))
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(events.Process{}) {
			v.FieldByName("Cmdline").Set(reflect.ValueOf([]string{"app", "--password", "hunter2"}))
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				withSecrets(v.Field(i))
			}
		}
	}
}

// A flag that names a secret as the last argument has no value after it:
// nothing is removed and nothing is read past the end.
func TestSecretFlagLast(t *testing.T) {
	for _, in := range [][]string{
		{"app", "--password"},
		{"sh", "-c", "app --token"},
	} {
		got, removed := (*Rules)(nil).Args(in)
		if !slices.Equal(got, in) || len(removed) != 0 {
			t.Errorf("Args(%q) = %q, removed %q; want it unchanged", in, got, removed)
		}
	}
}

// An extra pattern masks every match in an argument, each capture group
// that took part in the match (the first one even at the argument's
// start), and not the groups that did not.
func TestExtraPatternGroups(t *testing.T) {
	r, err := New([]string{`(ghp_[a-z0-9]+)`, `user=(\w+)(?:,role=(\w+))?;pass=(\w+)`})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in, want string
		removed  []string
	}{
		{"ghp_abc1,ghp_def2", Mask + "," + Mask, []string{"ghp_abc1", "ghp_def2"}},
		{"--dsn=user=alice,role=admin;pass=swordfish", "--dsn=user=" + Mask + ",role=" + Mask + ";pass=" + Mask,
			[]string{"alice", "admin", "swordfish"}},
		// The optional group did not match: the first and third still do.
		{"--dsn=user=bob;pass=hunter2", "--dsn=user=" + Mask + ";pass=" + Mask, []string{"bob", "hunter2"}},
	} {
		got, removed := r.Args([]string{"app", c.in})
		if want := []string{"app", c.want}; !slices.Equal(got, want) {
			t.Errorf("Args(%q) = %q, want %q", c.in, got, want)
		}
		slices.Sort(removed)
		slices.Sort(c.removed)
		if !slices.Equal(removed, c.removed) {
			t.Errorf("Args(%q) removed %q, want %q", c.in, removed, c.removed)
		}
	}
}

// A value too short to be scrubbed from the rest of the record is still
// masked where the pattern found it.
func TestExtraPatternShortValue(t *testing.T) {
	r, err := New([]string{`^--pin=(\d+)$`})
	if err != nil {
		t.Fatal(err)
	}
	got, removed := r.Args([]string{"atm", "--pin=42"})
	if want := []string{"atm", "--pin=" + Mask}; !slices.Equal(got, want) || !slices.Equal(removed, []string{"42"}) {
		t.Errorf("Args = %q, removed %q; want %q, removed [42]", got, removed, want)
	}
}

// The tail of a cut-off argument may end a secret flag's name, plural
// included; other tails do not.
func TestMayEndSecretName(t *testing.T) {
	for s, want := range map[string]bool{
		"ssword":        true, // …--password
		"--DB-PASSWORD": true,
		"entials":       true, // …credentials
		"tokens":        true,
		"-api-keys":     true,
		"rname":         false, // …username
		"--port":        false,
	} {
		if got := MayEndSecretName(s); got != want {
			t.Errorf("MayEndSecretName(%q) = %v, want %v", s, got, want)
		}
	}
}
