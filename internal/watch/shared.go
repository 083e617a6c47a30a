package watch

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/bindwatch/bindwatch/internal/iterload"
)

// shareRetry is how often a session whose iterators another tracer
// shares tries again to share its own: when that tracer stops, this one
// takes over within shareRetry, so the commands keep a copy to open while
// any tracer runs. A try while the other lives is a directory listing and
// a failed flock; the iterators are loaded only once the directory is
// this session's.
var shareRetry = 5 * time.Second

// NotSharing is the warning for a session that could not share its
// iterators (Options.ShareFailed told err).
func NotSharing(err error) string {
	return fmt.Sprintf("not sharing the socket-owner iterators with who, free and wait-free (they load their own, ~15 ms more on a host with many open files): %v", err)
}

// sharedIterators is a copy of the BPF iterators pinned for the one-shot
// commands while a session runs (iterload.Share), made in the background:
// the session is live without waiting for it.
type sharedIterators struct {
	tried chan struct{} // closed when the first try has ended
	stop  chan struct{} // closed by close: no more tries
	done  chan struct{} // closed when the last try has ended

	mu     sync.Mutex
	shared *iterload.Shared // or, while nil, err says why not
	err    error
}

// shareIterators starts pinning; failed hears why it could not, unless
// there is no bpffs or another tracer shares already (nothing to fix:
// then it tries again every shareRetry, to take over when that tracer
// stops).
func shareIterators(failed func(error)) *sharedIterators {
	x := &sharedIterators{tried: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(x.done)
		first := true
		for {
			s, err := iterload.Share()
			x.mu.Lock()
			x.shared, x.err = s, err
			x.mu.Unlock()
			if first {
				close(x.tried)
				first = false
			}
			if !errors.Is(err, iterload.ErrSharedElsewhere) {
				if err != nil && failed != nil && !errors.Is(err, os.ErrNotExist) {
					failed(err)
				}
				return
			}
			select {
			case <-x.stop:
				return
			case <-time.After(shareRetry):
			}
		}
	}()
	return x
}

// state is the copy pinned, or why there is none, as the last try left
// it.
func (x *sharedIterators) state() (*iterload.Shared, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.shared, x.err
}

// close stops the tries and unpins the copy (waiting for a try in
// progress to end first).
func (x *sharedIterators) close() {
	if x == nil {
		return
	}
	close(x.stop)
	<-x.done
	if s, _ := x.state(); s != nil {
		s.Close()
	}
}
