package watch

import (
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

// shared completes a port_shared record the kernel wrote — both sides
// described, the group counted — and tells whether it is silent sharing
// (diagnose.Sharing): the same program handing over to itself, or its own
// workers, is not written. The kernel writes at most one record per port
// and pair of processes a minute, so the sock_diag and owner lookup here
// is bounded by it.
func (in *incidents) shared(r *events.PortShared) bool {
	in.enrich.r.Describe(&r.Joiner)
	in.enrich.r.Describe(&r.Holder)
	r.Why = diagnose.Sharing(&r.Joiner, &r.Holder)
	if r.Why == "" {
		return false
	}
	// The group as it is now: the sockets on the joined address, in the
	// joiner's network namespace (or the holder's, if the joiner is gone).
	now := time.Now()
	if now.Sub(in.sharedWindow) >= time.Minute {
		in.sharedWindow, in.sharedLookups = now, 0
	}
	if in.sharedLookups >= maxSharedLookups {
		return true
	}
	in.sharedLookups++
	programs := map[string]bool{}
	for _, pid := range []int{r.Joiner.PID, r.Holder.PID} {
		ns := host.Netns{Inode: r.Netns, Path: "/proc/" + strconv.Itoa(pid) + "/ns/net"}
		rep, err := in.enrich.r.Who(ns, r.Proto, r.Port)
		if err != nil {
			continue
		}
		for _, h := range rep.Holders {
			if h.Addr != r.Addr || (h.State != "LISTEN" && h.State != "UNCONN") {
				continue
			}
			r.GroupSize++
			for i := range h.Processes {
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
	return true
}
