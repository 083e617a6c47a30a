package incident

import (
	"slices"
	"strconv"
	"time"

	"github.com/bindwatch/bindwatch/internal/diagnose"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// maxSharedLookups bounds the group lookups (sock_diag and owners, ~10 ms
// each) of port_shared records a minute. The kernel writes at most 8 a
// minute per port, but a user holding many ports could have each joined;
// past the bound a record is written without its group (group_size 0).
const maxSharedLookups = 64

// sharedGrace is how long the same program in the same cgroup has to hand
// over: haproxy -sf's new process binds, then tells the old one, which
// closes its listeners at once. If both still hold the address after it,
// they are two copies sharing the port (why "copy"). maxSharedPending
// bounds the records waiting; past it, a same-program join is let go.
const (
	sharedGrace      = 5 * time.Second
	maxSharedPending = 256
)

type pendingShared struct {
	rec *events.PortShared
	due time.Time
}

// shared completes a port_shared record the kernel wrote — both sides
// described, the group counted — and tells whether to write it now
// (diagnose.Sharing): another program, or the same one from another
// cgroup. The same program in the same cgroup waits sharedGrace: a
// hand-over (haproxy -sf) ends with the holder gone from the group, and is
// not written; two copies still sharing then are. The kernel writes at
// most 8 records a minute per port, and the group lookups here are
// bounded (maxSharedLookups).
func (in *Live) shared(r *events.PortShared) bool {
	in.res.Describe(&r.Joiner)
	in.res.Describe(&r.Holder)
	r.Why = diagnose.Sharing(&r.Joiner, &r.Holder)
	if r.Why == "" {
		if len(in.sharedPending) < maxSharedPending {
			in.sharedPending = append(in.sharedPending, pendingShared{r, time.Now().Add(sharedGrace)})
		}
		return false
	}
	in.sharedGroup(r)
	return true
}

// sharedDue writes the same-program joins whose grace has passed and
// whose holder and joiner both still hold the address.
func (in *Live) sharedDue(now time.Time) error {
	for len(in.sharedPending) > 0 && !now.Before(in.sharedPending[0].due) {
		r := in.sharedPending[0].rec
		in.sharedPending[0] = pendingShared{}
		in.sharedPending = in.sharedPending[1:]
		pids := in.sharedGroup(r)
		if !slices.Contains(pids, r.Holder.PID) || !slices.Contains(pids, r.Joiner.PID) {
			continue // handed over (or the joiner let go)
		}
		r.Why = events.SharedCopy
		if err := in.write(r); err != nil {
			return err
		}
	}
	return nil
}

// sharedGroup fills in the group as it is now: the sockets on the joined
// address, in the joiner's network namespace (or the holder's, if the
// joiner is gone), and returns the pids owning them.
func (in *Live) sharedGroup(r *events.PortShared) []int {
	now := time.Now()
	if now.Sub(in.sharedWindow) >= time.Minute {
		in.sharedWindow, in.sharedLookups = now, 0
	}
	if in.sharedLookups >= maxSharedLookups {
		return nil
	}
	in.sharedLookups++
	r.GroupSize, r.Programs = 0, 0
	programs := map[string]bool{}
	var pids []int
	for _, pid := range []int{r.Joiner.PID, r.Holder.PID} {
		ns := host.Netns{Inode: r.Netns, Path: "/proc/" + strconv.Itoa(pid) + "/ns/net"}
		holders, err := in.res.Holders(ns, r.Proto, r.Port)
		if err != nil {
			continue
		}
		for _, h := range holders {
			if h.Addr != r.Addr || (h.State != "LISTEN" && h.State != "UNCONN") {
				continue
			}
			r.GroupSize++
			for i := range h.Processes {
				pids = append(pids, h.Processes[i].PID)
				if id := diagnose.ProgramID(&h.Processes[i]); id != "" {
					programs[id+"\x00"+h.Processes[i].Cgroup] = true
				}
			}
		}
		break
	}
	if len(programs) > 1 {
		r.Programs = len(programs)
	}
	return pids
}
