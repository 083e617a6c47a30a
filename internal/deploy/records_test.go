package deploy

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/events"
)

// TestFreeActions: each state Stop can leave a target in becomes the
// actions a free record lists — one per signal sent, or one saying why
// none was — including the states a real run rarely reaches (a SIGKILL
// that could not be sent, a holder gone before its signal).
func TestFreeActions(t *testing.T) {
	target := func(pid int) *Target { return &Target{Process: events.Process{PID: pid, Comm: "srv"}, pidfd: -1} }
	exited, survived, killed, killFailed, openFailed, gone, refused, bystander :=
		target(10), target(11), target(12), target(13), target(14), target(15), target(16), target(17)
	exited.Sent, exited.Exited = []syscall.Signal{unix.SIGTERM}, true
	survived.Sent = []syscall.Signal{unix.SIGTERM}
	killed.Sent, killed.Exited = []syscall.Signal{unix.SIGTERM, unix.SIGKILL}, true
	killFailed.Sent, killFailed.SignalErr = []syscall.Signal{unix.SIGTERM}, errors.New("send SIGKILL: operation not permitted")
	openFailed.SignalErr = errors.New("pidfd_open: operation not permitted")
	gone.Exited = true
	refused.Refused = "it is pid 1"

	busy := &Busy{Refusal: &Refusal{Port: Port{8080, "tcp"}}}
	stoppable := &PortPlan{Busy: busy, Targets: []*Target{exited, survived, killed, killFailed, openFailed, gone}}
	blocked := &PortPlan{Busy: busy, Blocked: "it is held by pid 16 (srv), which bindwatch will not stop: it is pid 1", Targets: []*Target{refused, bystander}}
	pl := &Plan{Ports: []*PortPlan{stoppable, blocked}, opts: StopOptions{Signal: unix.SIGINT}}

	for _, c := range []struct {
		t      *Target
		pp     *PortPlan
		dryRun bool
		want   string // "SIGNAL result[: reason]; ..."
	}{
		{exited, stoppable, false, "SIGTERM exited"},
		{survived, stoppable, false, "SIGTERM still_running"},
		{killed, stoppable, false, "SIGTERM still_running; SIGKILL exited"},
		{killFailed, stoppable, false, "SIGTERM still_running; SIGKILL failed: send SIGKILL: operation not permitted"},
		{openFailed, stoppable, false, "SIGINT failed: pidfd_open: operation not permitted"},
		{gone, stoppable, false, "SIGINT already_exited"},
		{refused, blocked, false, "SIGINT refused: it is pid 1"},
		{refused, blocked, true, "SIGINT refused: it is pid 1"},
		{bystander, blocked, false, "SIGINT skipped: signalling it cannot free the port: it is held by pid 16 (srv), which bindwatch will not stop: it is pid 1"},
		{bystander, blocked, true, "SIGINT skipped: signalling it cannot free the port: it is held by pid 16 (srv), which bindwatch will not stop: it is pid 1"},
		{survived, blocked, true, "SIGTERM still_running"},
	} {
		var got []string
		for _, a := range pl.actions(c.t, c.pp, c.dryRun) {
			if a.PID != c.t.Process.PID || a.Comm != "srv" {
				t.Errorf("pid %d: action names pid %d (%s)", c.t.Process.PID, a.PID, a.Comm)
			}
			s := a.Signal + " " + a.Result
			if a.Reason != "" {
				s += ": " + a.Reason
			}
			got = append(got, s)
		}
		if strings.Join(got, "; ") != c.want {
			t.Errorf("pid %d (dry run %v): actions %q, want %q", c.t.Process.PID, c.dryRun, strings.Join(got, "; "), c.want)
		}
	}

	// A dry run: a target of a port that signalling frees would be sent
	// the signal; nothing was.
	fresh := target(19)
	stoppable.Targets = append(stoppable.Targets, fresh)
	if a := pl.actions(fresh, stoppable, true); len(a) != 1 || a[0].Result != events.ResultDryRun || a[0].Signal != "SIGINT" {
		t.Errorf("dry run: actions %+v, want one SIGINT dry_run", a)
	}
}

// TestFreeRecordEndState: holders are what was found, holders_after the
// end state — absent in a dry run, empty once free — and a port released
// in under a millisecond still says when.
func TestFreeRecordEndState(t *testing.T) {
	listener := events.Holder{State: "LISTEN", Addr: "0.0.0.0", Port: 8080, Inode: 7, Processes: []events.Process{{PID: 42}}}
	v6 := events.Holder{State: "LISTEN", Addr: "::", Port: 8080, Inode: 8, Processes: []events.Process{{PID: 43}}}
	found := withHolders(&Busy{Refusal: &Refusal{Port: Port{8080, "tcp"}, Addr: netip.IPv4Unspecified(), Syscall: "bind", Errno: unix.EADDRINUSE}, Holders: []events.Holder{listener}},
		[]events.Holder{listener, v6})
	if len(found.Holders) != 2 {
		t.Fatalf("found holders %+v, want the listener once and the IPv6 one", found.Holders)
	}
	pp := &PortPlan{Port: Port{8080, "tcp"}, found: found, FreedAfter: 300 * time.Microsecond}
	pl := &Plan{Ports: []*PortPlan{pp}, opts: StopOptions{Signal: unix.SIGTERM, Grace: 2 * time.Second}}

	rec := pl.Records(false, time.Now())[0]
	if !rec.Free || rec.HoldersAfter == nil || len(rec.HoldersAfter) != 0 || rec.ReleasedAfterMS != 1 || rec.GraceMS != 2000 {
		t.Errorf("released port: free %v holders_after %v released_after_ms %d grace_ms %d; want free, [], 1, 2000",
			rec.Free, rec.HoldersAfter, rec.ReleasedAfterMS, rec.GraceMS)
	}
	if len(rec.Holders) != 2 || rec.Refusal == nil || *rec.Refusal != (events.RefusalRecord{Syscall: "bind", Addr: "0.0.0.0", Errno: "EADDRINUSE"}) {
		t.Errorf("found state: holders %+v refusal %+v", rec.Holders, rec.Refusal)
	}

	pp.Busy, pp.FreedAfter = found, 0
	if rec := pl.Records(true, time.Now())[0]; rec.Free || rec.HoldersAfter != nil || rec.ReleasedAfterMS != 0 || rec.Hint != "" {
		t.Errorf("dry run of a held port: want held, no holders_after, no released_after_ms, no hint: %+v", rec)
	}
}
