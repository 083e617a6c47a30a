package watch

import (
	"errors"
	"os"

	"github.com/bindwatch/bindwatch/internal/iterload"
)

// sharedIterators is a copy of the BPF iterators pinned for the one-shot
// commands while a session runs (iterload.Share), made in the background:
// the session is live without waiting for it.
type sharedIterators struct {
	done   chan struct{}
	shared *iterload.Shared // or, once done, err says why not
	err    error
}

// shareIterators starts pinning; failed hears why it could not, unless
// there is no bpffs or another tracer shares already (nothing to fix).
func shareIterators(failed func(error)) *sharedIterators {
	x := &sharedIterators{done: make(chan struct{})}
	go func() {
		defer close(x.done)
		s, err := iterload.Share()
		x.shared, x.err = s, err
		if err != nil && failed != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, iterload.ErrSharedElsewhere) {
			failed(err)
		}
	}()
	return x
}

// close unpins the copy (waiting for the pinning to end first).
func (x *sharedIterators) close() {
	if x == nil {
		return
	}
	<-x.done
	if x.shared != nil {
		x.shared.Close()
	}
}
