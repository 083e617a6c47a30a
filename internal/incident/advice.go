package incident

import (
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Advice is the fix of an incident as a report says it. While the holder
// may still hold the port it is the failure's hint, under "fix". Once the
// timeline shows the port released — the incident recovered, or every
// holder let go — it is advice for next time: the same hint without the
// commands that would stop a holder that is gone ("kill 4242"), under
// "next time". A postmortem must not tell its reader to kill a pid that
// by now may be another process.
func Advice(in *events.Incident) (label, text string) {
	if in.Hint == "" {
		return "", ""
	}
	gone := releasedPIDs(in)
	if gone == nil {
		return "fix", in.Hint
	}
	text = withoutKills(in.Hint, gone)
	if text == "" {
		text = "nothing more to do than what the timeline shows: the holder let go, and the port was free again."
	}
	return "next time", text
}

// releasedPIDs are the pids the timeline shows gone from the port: every
// holder's once the incident recovered; otherwise the released records'
// holders and closers, and only if every holder with a process is among
// them (nil when the port may still be held).
func releasedPIDs(in *events.Incident) map[int]bool {
	gone := map[int]bool{}
	holderPIDs := func(h *events.IncidentHolder) []int {
		var pids []int
		for _, p := range h.Processes {
			pids = append(pids, p.PID)
		}
		if h.BoundBy != nil {
			pids = append(pids, h.BoundBy.PID)
		}
		return pids
	}
	if in.State == events.IncidentRecovered {
		for i := range in.Holders {
			for _, pid := range holderPIDs(&in.Holders[i]) {
				gone[pid] = true
			}
		}
		for _, r := range in.Released {
			markGone(gone, r)
		}
		return gone
	}
	if len(in.Released) == 0 {
		return nil
	}
	for _, r := range in.Released {
		markGone(gone, r)
	}
	for i := range in.Holders {
		h := &in.Holders[i]
		pids := holderPIDs(h)
		if len(pids) == 0 {
			continue
		}
		released := false
		for _, pid := range pids {
			released = released || gone[pid]
		}
		if !released {
			return nil
		}
		for _, pid := range pids {
			gone[pid] = true
		}
	}
	return gone
}

func markGone(gone map[int]bool, r *events.Released) {
	if r.Holder != nil {
		gone[r.Holder.PID] = true
	}
	if r.Closer != nil {
		gone[r.Closer.PID] = true
	}
}

// The ways a hint says to kill a holder (internal/diagnose): a sentence
// that is only that ("Stop it: kill 7 (kill -9 only if it ignores
// SIGTERM)."), a parenthesis ("(its service, or kill 7)", "(kill -HUP 7)")
// and a last alternative (", or kill 7").
var (
	killSentence = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?:If it should not run, s|S)top it: kill ((?:\d+ ?)+)(?: \(kill -9 only if it ignores SIGTERM\))?\.\s*`)
	})
	killParen = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(` ?\((its service, or )?kill (?:-[A-Z0-9]+ )?((?:\d+ ?)+)\)`)
	})
	killOr = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`,? or kill ((?:\d+ ?)+)`) })
)

// withoutKills removes from hint the commands that kill pids the
// timeline shows gone; a command naming a pid still there stays.
func withoutKills(hint string, gone map[int]bool) string {
	allGone := func(list string) bool {
		for _, f := range strings.Fields(list) {
			if pid, err := strconv.Atoi(f); err != nil || !gone[pid] {
				return false
			}
		}
		return true
	}
	hint = killSentence().ReplaceAllStringFunc(hint, func(m string) string {
		if allGone(killSentence().FindStringSubmatch(m)[1]) {
			return ""
		}
		return m
	})
	hint = killParen().ReplaceAllStringFunc(hint, func(m string) string {
		sub := killParen().FindStringSubmatch(m)
		if !allGone(sub[2]) {
			return m
		}
		if sub[1] != "" {
			return " (its service)"
		}
		return ""
	})
	hint = killOr().ReplaceAllStringFunc(hint, func(m string) string {
		if allGone(killOr().FindStringSubmatch(m)[1]) {
			return ""
		}
		return m
	})
	return strings.TrimSpace(hint)
}
