package device

// A second reader of one queue, for the goroutine that has just written
// to the device (the underlay reader): what the kernel answers during that
// write (an echo reply, TCP's ACKs and the data they release) is already
// queued when write returns, and reading it there saves the hand-off to
// the queue's own reader, a thread wake-up that costs more than the work.
//
// Two readers of one queue must not reorder a flow: the packets one reads
// must leave before those the other reads next. So the views share a
// gate. A view takes it with its first read and keeps it until
// ReleaseRead, after its batch is sent; the queue's own reader gives it
// up only when it finds the queue empty, just before it waits, and the
// other view never waits for it: when the gate is taken, the reader that
// holds it is running and will find the packets itself.

import "sync/atomic"

// readGate serializes the readers of one queue. The queue's own reader,
// finding it taken, sleeps on wake until the holder gives it up (a
// goroutine park, not a spin: on two cores a spinning reader takes the
// CPU the holder needs).
type readGate struct {
	held   atomic.Bool
	wanted atomic.Bool
	wake   chan struct{} // capacity 1
}

func newReadGate() *readGate { return &readGate{wake: make(chan struct{}, 1)} }

// wait sleeps until the gate is given up, or returns at once if it
// already is.
func (g *readGate) wait() {
	g.wanted.Store(true)
	if !g.held.Load() { // given up between the failed take and wanted
		g.wanted.Store(false)
		return
	}
	<-g.wake
}

func (g *readGate) give() {
	g.held.Store(false)
	if g.wanted.Swap(false) {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// Share returns a second view of the queue dev for another goroutine:
// its reads never wait, and the two serialize as described above. Share
// must be called before dev is read. The view is not to be closed or
// written (closing dev closes both). It reports false for queues without
// tunneld's own reader (no virtio header).
func Share(dev Device) (Device, bool) {
	g := newReadGate()
	switch t := dev.(type) {
	case *vnetTUN:
		r, err := newVnetReader(t.Device.File(), 0)
		if err != nil {
			return nil, false
		}
		t.r.gate, r.gate, r.try = g, g, true
		return &vnetTUN{Device: t.Device, r: r, uso: t.uso}, true
	case *vnetTAP:
		r, err := newVnetReader(t.f, 14)
		if err != nil {
			return nil, false
		}
		t.r.gate, r.gate, r.try = g, g, true
		return &vnetTAP{f: t.f, uso: t.uso, name: t.name, r: r}, true
	}
	return nil, false
}

// ReleaseRead gives up the gate dev's reads took (a no-op for a queue
// that is not shared, or a view that holds nothing).
func ReleaseRead(dev Device) {
	switch t := dev.(type) {
	case *vnetTUN:
		t.r.release()
	case *vnetTAP:
		t.r.release()
	}
}

// take takes the gate for r's reads, or reports that the other reader
// holds it.
func (r *vnetReader) take() bool {
	if r.gate == nil || r.holding {
		return true
	}
	if !r.gate.held.CompareAndSwap(false, true) {
		return false
	}
	r.holding = true
	return true
}

func (r *vnetReader) release() {
	if r.holding {
		r.holding = false
		r.gate.give()
	}
}
