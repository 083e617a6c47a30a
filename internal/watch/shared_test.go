package watch

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/iterload"
	"github.com/bindwatch/bindwatch/internal/testenv"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// TestSessionSharesIterators: a session with ShareIterators pins a copy
// of the iterators in the background (make gorace runs it under the race
// detector), the commands can open it while the session runs, and it is
// gone when the session stops. Where another test program's tracer shares
// already, the session must say nothing and the commands use that copy.
func TestSessionSharesIterators(t *testing.T) {
	testenv.BPFFS(t)
	// No taking over from another test program's tracer: its test may
	// check that nothing is left once its tracers stopped.
	defer func(d time.Duration) { shareRetry = d }(shareRetry)
	shareRetry = time.Hour
	var mu sync.Mutex
	var failed []error
	s := attachSessionOpts(t, Options{Tracer: tracer.Config{}, ShareIterators: true, ShareFailed: func(err error) {
		mu.Lock()
		failed = append(failed, err)
		mu.Unlock()
	}})
	s.run()
	<-s.s.shared.tried
	shared, err := s.s.shared.state()
	if err != nil && !errors.Is(err, iterload.ErrSharedElsewhere) {
		t.Fatalf("the session did not share: %v", err)
	}
	it, err := iterload.OpenShared()
	if err != nil {
		t.Fatalf("open the shared iterators while the session runs: %v", err)
	}
	if shared != nil && it.SharedFrom() != shared.Path {
		t.Errorf("opened %s, the session shared %s", it.SharedFrom(), shared.Path)
	}
	it.Close()
	s.stop()
	mu.Lock()
	if len(failed) != 0 {
		t.Errorf("ShareFailed was told %v", failed)
	}
	mu.Unlock()
	if shared == nil {
		t.Log("another tracer shares its copy: this session's was not made")
		return
	}
	if _, err := os.Lstat(shared.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the session stopped: %v, want it removed", shared.Path, err)
	}
}
