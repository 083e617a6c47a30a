package tracer

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// failureRing reads the failure ring buffer (the events map): the
// kernel's failures as it wrote them, one struct event each. The incident
// records have a ring of their own (incidents.go); the two are merged in
// time order by the session. One goroutine reads it (Tracer.Read).
type failureRing struct {
	r *ringbuf.Reader
	// rec is reused by every read: its sample buffer is allocated once,
	// not once per failure.
	rec ringbuf.Record
}

func openFailureRing(m *ebpf.Map) (*failureRing, error) {
	r, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &failureRing{r: r}, nil
}

func (f *failureRing) setDeadline(d time.Time) { f.r.SetDeadline(d) }
func (f *failureRing) flush()                  { f.r.Flush() }

// read reads the next failure as the kernel wrote it.
func (f *failureRing) read(ev *bindwatchEvent) error {
	if err := f.r.ReadInto(&f.rec); err != nil {
		return err
	}
	rec := &f.rec
	if len(rec.RawSample) < int(unsafe.Sizeof(*ev)) {
		return fmt.Errorf("short ring buffer record: %d bytes, want %d (hint: the BPF object and the binary disagree; run make generate)", len(rec.RawSample), unsafe.Sizeof(*ev))
	}
	// The record is a struct event written by the kernel on this machine,
	// so it is in host layout already.
	*ev = *(*bindwatchEvent)(unsafe.Pointer(&rec.RawSample[0]))
	return nil
}

// unread is how many failure records wait in the ring, unread.
func (f *failureRing) unread() uint64 {
	return uint64(f.r.AvailableBytes()) / recordSize
}

// recordSize is a failure record's size in the ring buffer: the event and
// the kernel's 8-byte header, rounded up to 8 bytes (BPF_RINGBUF_HDR_SZ).
const recordSize = (8 + uint64(unsafe.Sizeof(bindwatchEvent{})) + 7) &^ 7

func (f *failureRing) close() { f.r.Close() }
