package watch

import (
	"net"

	"github.com/bindwatch/bindwatch/internal/enrich"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/redact"
	"github.com/bindwatch/bindwatch/internal/resolve"
)

// enricher adds to a decoded failure what only user space can find: process
// details from /proc, the container and pod names of every process
// (internal/enrich), the holders and the diagnosis (internal/resolve) with
// the socket unit a service manager holds one for (enrich.SocketUnits), and
// the name of the SO_BINDTODEVICE interface.
type enricher struct {
	r *resolve.Resolver
}

// newEnricher returns once the resolver is ready: its owner iterator loads
// in the background, and a session is not live until it could resolve.
func newEnricher(rules *redact.Rules) (*enricher, error) {
	r, err := resolve.New(resolve.Options{Redact: rules, Names: enrich.New(enrich.Options{}).Process, SocketUnit: enrich.NewSocketUnits().Holder})
	if err != nil {
		return nil, err
	}
	r.OwnerLookup() // waits for the iterator load (or its fallback)
	return &enricher{r: r}, nil
}

// failure enriches f. A lookup that fails (the failing process's
// namespace is gone, say) leaves what the kernel captured and a diagnosis
// made from it, and says why in f.ResolveError: the failure is reported
// either way. It reports whether the lookup worked.
func (e *enricher) failure(f *events.Failure) bool {
	if err := e.r.Resolve(f); err != nil {
		f.ResolveError = err.Error()
	}
	if i := f.Socket.BoundDevIndex; i > 0 && f.Socket.BoundDev == "" {
		// Interface indexes are per network namespace: only name it when
		// the socket is in ours.
		if f.Process.Netns == e.r.OwnNetns().Inode {
			if ifc, err := net.InterfaceByIndex(i); err == nil {
				f.Socket.BoundDev = ifc.Name
			}
		}
	}
	return f.ResolveError == ""
}

func (e *enricher) close() { e.r.Close() }

// procPidNamespace is host.ProcPidNamespace (watch.go's host is the host
// name).
func procPidNamespace() error { return host.ProcPidNamespace() }
