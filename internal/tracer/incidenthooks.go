package tracer

import (
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// hookLife is the incident tracepoint programs' lifecycle: attached while
// the kernel watches a port, and a linger after the last one is
// unwatched. The generation changes when a port is newly watched or the
// last one unwatched: a linger timer detaches only if it has not changed
// since it was set. Its state is under mu: the timer runs on its own.
type hookLife struct {
	coll *ebpf.Collection

	mu    sync.Mutex
	links []link.Link
	gen   int
	// stopped: the tracer detached (or closed) its programs; the hooks
	// are never attached again.
	stopped bool
}

// watching is told that a port is newly watched: it attaches the hooks
// if they are not, and cancels a linger's detaching.
func (h *hookLife) watching() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++ // a linger timer set before this must not detach
	if h.links != nil || h.stopped {
		return nil
	}
	links, err := attachIncidentHooks(h.coll)
	if err != nil {
		return err
	}
	h.links = links
	return nil
}

// idle is told that no port is watched any more: after linger, unless one
// is watched again, the hooks are detached.
func (h *hookLife) idle(linger time.Duration) {
	h.mu.Lock()
	h.gen++
	gen := h.gen
	h.mu.Unlock()
	time.AfterFunc(linger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.gen == gen { // nothing watched since
			closeLinks(h.links)
			h.links = nil
		}
	})
}

// attached tells whether the hooks are attached.
func (h *hookLife) attached() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links != nil
}

// stop returns the hooks' links for the tracer to close, and keeps them
// from being attached again.
func (h *hookLife) stop() []link.Link {
	h.mu.Lock()
	defer h.mu.Unlock()
	links := h.links
	h.links, h.stopped = nil, true
	return links
}
