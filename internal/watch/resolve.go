package watch

import (
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/tracer"
)

// resolver adds to a decoded failure what only user space can find.
type resolver struct {
	t *tracer.Tracer
}

func newResolver(t *tracer.Tracer) *resolver { return &resolver{t: t} }

func (r *resolver) failure(f *events.Failure) {}
