package deploy

import (
	"fmt"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Describe says who holds the port, for people: one line per socket that
// stands in the way, with the processes that have it open, and one for
// the TIME_WAIT sockets.
func (b *Busy) Describe(now time.Time) []string {
	var lines []string
	for _, h := range b.Live() {
		sock := fmt.Sprintf("%s %s", h.State, events.HostPort(h.Addr, h.Port))
		if h.ReuseAddr != nil {
			sock += " reuseaddr=" + events.OnOff(*h.ReuseAddr)
		}
		if h.ReusePort != nil && *h.ReusePort {
			sock += " reuseport=on"
		}
		if h.Netns != 0 && h.Netns != b.Netns.Inode {
			sock += fmt.Sprintf(" netns %d", h.Netns)
		}
		if len(h.Processes) == 0 {
			lines = append(lines, sock+": "+events.UnownedText(&h))
			continue
		}
		for _, p := range h.Processes {
			lines = append(lines, sock+": "+events.ProcessText(&p, now))
		}
	}
	if tw := b.TimeWait; tw != nil {
		lines = append(lines, fmt.Sprintf("TIME_WAIT: %d closed connection%s, the last expires in %s (no process: the kernel keeps each for 60 s after the close)",
			tw.Count, events.Plural(tw.Count), events.Seconds(tw.MaxRemainingMS)))
	}
	return lines
}
