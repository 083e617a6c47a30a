package tracer

import "os"

// BackendStatus is whether one backend really works on this kernel.
type BackendStatus struct {
	Name string
	// Err is why it does not; nil when it loaded and attached.
	Err error
}

// Probe tries every backend for real — load, attach, detach — in the order
// auto would, and says which work here. It needs the same privileges as
// tracing.
func Probe() []BackendStatus {
	var out []BackendStatus
	cfg := Config{NoHolders: true, RingSize: os.Getpagesize()}
	if err := preflight(); err != nil {
		for _, b := range Backends() {
			out = append(out, BackendStatus{Name: b.Name(), Err: err})
		}
		return out
	}
	for _, b := range Backends() {
		t, err := openBackend(cfg, b)
		if err == nil {
			t.Close()
		}
		out = append(out, BackendStatus{Name: b.Name(), Err: err})
	}
	return out
}
