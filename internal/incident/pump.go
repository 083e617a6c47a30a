package incident

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The kernel's incident ring holds ~360 records: a flood of signals
// (any user may send its own holder thousands a second) fills it within
// the session's 100 ms step, and then a genuine signal, release or
// recovery finds no room. The pump reads the ring as records come, folds
// each sender's signals past their rate into counts (signal_repeats), and
// queues the rest for the session's step, which describes and writes
// them — the expensive part, done only for what is kept.
const (
	// pumpWait is how long one wait for the kernel lasts: how soon the
	// pump sees a stop, and flushes folds on a quiet ring.
	pumpWait = 50 * time.Millisecond
	// signalWindow is the period of the signal rates (events.SignalBurst
	// per port and sender, events.SignalPortBurst per port).
	signalWindow = time.Second
	// maxSignalKeys bounds the (port, sender, signal) counts of a window:
	// past it, senders are counted together (sender pid 0).
	maxSignalKeys = 1024
	// maxQueued bounds the records waiting for the step; signals past it
	// are folded, other records past maxQueued+queueReserve are lost
	// (counted: incident_records_lost).
	maxQueued    = 8192
	queueReserve = 1024
)

type portID struct {
	netns uint32
	proto string
	port  uint16
}

type pumpSignalKey struct {
	port   portID
	sender int
	signal string
	result string
}

// pump reads the kernel's incident records on its own goroutine.
type pump struct {
	t Kernel

	mu        sync.Mutex
	queue     []events.Record
	err       error // why reading stopped, other than Close
	lost      uint64
	folded    uint64
	window    time.Time
	perKey    map[pumpSignalKey]int
	perPort   map[portID]int
	folds     map[pumpSignalKey]*events.SignalRepeats
	foldOrder []pumpSignalKey

	stop chan struct{}
	done chan struct{}
}

func newPump(t Kernel) *pump {
	return &pump{t: t, perKey: map[pumpSignalKey]int{}, perPort: map[portID]int{}, folds: map[pumpSignalKey]*events.SignalRepeats{}}
}

// start runs the pump until close.
func (p *pump) start() {
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			rec, err := p.t.WaitIncident(time.Now().Add(pumpWait))
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					p.mu.Lock()
					p.err = err
					p.mu.Unlock()
				}
				return
			}
			p.accept(rec, time.Now())
		}
	}()
}

// close stops the pump's goroutine; what the kernel still holds is then
// read by drain.
func (p *pump) close() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.stop = nil
}

// drain reads, on the caller's goroutine, what the kernel holds now (the
// pump closed or never started), and flushes every fold.
func (p *pump) drain() error {
	for {
		rec, err := p.t.ReadIncident()
		if err != nil {
			return err
		}
		if rec == nil {
			break
		}
		p.accept(rec, time.Now())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush(time.Now(), true)
	return nil
}

// take returns the queued records, in the kernel's order, and why the
// pump stopped reading if it did.
func (p *pump) take() ([]events.Record, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush(time.Now(), false)
	q, err := p.queue, p.err
	p.queue, p.err = nil, nil
	return q, err
}

// pending tells whether records wait to be taken.
func (p *pump) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) > 0
}

// counts are the signals folded and the records lost so far.
func (p *pump) counts() (folded, lost uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.folded, p.lost
}

// accept queues rec, or folds it (a signal past its rates), or counts it
// lost (nil: a quiet wait, which only lets folds be flushed).
func (p *pump) accept(rec events.Record, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flush(now, false)
	if rec == nil {
		return
	}
	if s, ok := rec.(*events.Signal); ok {
		if !p.admit(s) {
			p.fold(s)
			return
		}
	} else if len(p.queue) >= maxQueued+queueReserve {
		p.lost++
		return
	}
	p.queue = append(p.queue, rec)
}

// admit tells whether a signal is recorded one by one: within
// events.SignalBurst a window for its port and sender, and
// events.SignalPortBurst for its port — or the sender's first of the
// window on the port, whatever the port's rate, so that a flood does not
// hide another sender's kill — and while the queue has room.
func (p *pump) admit(s *events.Signal) bool {
	port := portID{s.Netns, s.Proto, s.Port}
	k := pumpSignalKey{port, s.Sender.PID, s.Signal, s.Result}
	n, known := p.perKey[k]
	if !known && len(p.perKey) >= maxSignalKeys {
		return false
	}
	p.perKey[k] = n + 1
	p.perPort[port]++
	if len(p.queue) >= maxQueued {
		return false
	}
	return n == 0 || (n < events.SignalBurst && p.perPort[port] <= events.SignalPortBurst)
}

// fold counts s in its sender's fold (senders past maxSignalKeys
// together, as sender pid 0).
func (p *pump) fold(s *events.Signal) {
	p.folded++
	k := pumpSignalKey{portID{s.Netns, s.Proto, s.Port}, s.Sender.PID, s.Signal, s.Result}
	f := p.folds[k]
	if f == nil && len(p.folds) >= maxSignalKeys {
		k.sender = 0
		f = p.folds[k]
	}
	if f == nil {
		sender := s.Sender
		if k.sender == 0 {
			sender = events.Process{}
		}
		f = &events.SignalRepeats{
			Header: events.Header{Type: events.TypeSignalRepeats, Version: events.Version}, Proto: s.Proto, Netns: s.Netns, Port: s.Port,
			Signal: s.Signal, Sender: sender, Target: s.Target, Result: s.Result, First: s.Time,
		}
		p.folds[k] = f
		p.foldOrder = append(p.foldOrder, k)
	}
	f.Count++
	f.Last = s.Time
}

// flush queues the window's folds once it is over (or now, if all), and
// starts a new window.
func (p *pump) flush(now time.Time, all bool) {
	if !all && now.Sub(p.window) < signalWindow {
		return
	}
	for _, k := range p.foldOrder {
		f := p.folds[k]
		f.Time = now
		p.queue = append(p.queue, f)
	}
	p.window = now
	clear(p.perKey)
	clear(p.perPort)
	clear(p.folds)
	p.foldOrder = p.foldOrder[:0]
}
