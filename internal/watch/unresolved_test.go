package watch

import (
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// A failure whose process and network namespace are gone by the time it is
// resolved keeps what the kernel captured, and says why it has nothing
// more (resolve_error); the session counts it for the stop record.
func TestUnresolvedFailureSaysWhy(t *testing.T) {
	testenv.RequireRoot(t)
	e, err := newEnricher(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	f := &events.Failure{Errno: "EADDRINUSE", Syscall: "bind", Proto: "tcp", Family: "ipv4", Addr: "127.0.0.1", Port: 8080,
		Process: events.Process{PID: 1 << 30, Comm: "gone"}, Holders: []events.Holder{}}
	f.Process.Netns = 1 // no namespace has inode 1
	if e.failure(f) {
		t.Fatalf("a failure in a namespace that does not exist was resolved: %+v", f)
	}
	if !strings.Contains(f.ResolveError, "network namespace 1") || f.Diagnosis == "" {
		t.Errorf("resolve_error %q, diagnosis %q: want why, and a diagnosis from the kernel's capture", f.ResolveError, f.Diagnosis)
	}
	if text := events.Text(f); !strings.Contains(text, "\n  unresolved: ") {
		t.Errorf("text does not say it is unresolved:\n%s", text)
	}
}
