package dataplane

// The device reader's work for one batch: read what the queue holds,
// classify and encapsulate it, send it. Two goroutines run it per queue
// in the direct pipeline: the queue's own reader, which waits for the
// device, and the underlay reader right after it wrote to the device,
// through a view of the queue that never waits (device.Share): what the
// kernel answered during that write then leaves without a thread
// hand-off (answer, below).

import (
	"errors"
	"math/bits"
	"sync/atomic"

	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/flowhash"
	"tunnelplane/dataplane/stats"
	"tunnelplane/encap"
)

// deviceReader is one goroutine's device-reading state for one queue.
type deviceReader struct {
	d     *Dataplane
	q     *queueSet
	dev   device.Device // the queue, or a shared view of it
	room  int
	probe *device.ReadProbe
	idx   []uint32
	bufs  [][]byte
	sizes []int
	// have[i] is the id bufs[i] was made for: the unused buffers of a
	// batch come back first and in order, so their slices move along
	// instead of being made again (measured: 4 slices made per packet
	// otherwise, 6% of the hot path).
	have []uint32
	held int // idx[:held]: buffers kept from the last batch (unused or dropped)
	e    *egressBatch
	uw   *underlayWriter // direct pipeline; nil: hand off to the underlay writers
	// With the UDP-tunnel GSO TAP, TCP super-packets are read whole
	// (tnlgso.go).
	st           *superState
	icmpCounters stats.Counters // the ICMP writer's own, not part of the egress figures
	iw           *deviceWriter  // ICMP errors back to inner sources
	answered     *atomic.Uint64 // the underlay reader's: packets it read; nil for the queue's own reader
}

func (d *Dataplane) newDeviceReader(q *queueSet, dev device.Device) *deviceReader {
	// A read returns one packet, or one TSO super-packet split into up to
	// BatchSize segments. While the device has more queued, the reader
	// keeps reading (drain) into the same batch, as long as a whole
	// BatchSize of buffers is left for the next read, so that many small
	// packets leave in one sendmmsg (and one UDP GSO train) instead of one
	// system call each.
	room := dev.BatchSize()
	bs := batchFor(2*max(room, 64), d.bufs.small)
	r := &deviceReader{
		d: d, q: q, dev: dev, room: room,
		probe: device.NewReadProbe(dev),
		idx:   make([]uint32, bs),
		bufs:  make([][]byte, bs),
		sizes: make([]int, bs),
		have:  make([]uint32, bs),
		e:     &egressBatch{q: q, out: make([]packet, 0, bs), free: make([]uint32, 0, bs)},
	}
	if d.direct {
		r.uw = d.newUnderlayWriter(q, &q.uwriter, bs)
	}
	if sr, ok := dev.(device.SuperReader); ok && d.tgso != nil {
		r.st = newSuperState(sr, room)
	}
	r.iw = d.newDeviceWriter(dev, &r.icmpCounters, 16)
	for i := range r.have {
		r.have[i] = noBuffer
	}
	return r
}

// close returns the buffers r holds between batches.
func (r *deviceReader) close() {
	if r.st != nil && r.st.id != noBuffer {
		r.d.bufs.put(r.st.id)
		r.st.id = noBuffer
	}
	r.d.bufs.putBatch(r.idx[:r.held])
	r.held = 0
}

// step reads and sends one batch. It reports false when the reader must
// stop: the data plane is closing, or a stage failed (reported).
func (r *deviceReader) step() bool {
	d, q, c := r.d, r.q, &r.q.egress
	if !d.bufs.refill(r.idx, r.held, false, d.done) {
		r.held = 0 // refill gave them back
		return false
	}
	n := len(r.idx)
	bufs, sizes, idx, have := r.bufs, r.sizes, r.idx, r.have
	for i := range n {
		if have[i] != idx[i] {
			bufs[i], have[i] = d.bufs.buf(idx[i]), idx[i]
		}
	}
	defer device.ReleaseRead(r.dev) // after the batch has left: see device.Share
	var k int
	var err error
	if r.st != nil {
		k, err = d.readSupers(q, r.dev, r.st, bufs[:n], sizes[:n], r.probe, r.room)
	} else {
		k, err = r.dev.Read(bufs[:n], sizes[:n], Headroom)
	}
	if err != nil && k == 0 {
		r.held = n
		switch {
		case errors.Is(err, device.ErrWouldBlock):
		case device.IsTooManySegments(err):
			c.Drop(stats.DropTooBig)
		case errors.Is(err, device.ErrBadSuper):
			c.Drop(stats.Drop(encap.DropBadInner))
		default:
			d.bufs.putBatch(idx[:n])
			r.held = 0
			d.fatal("device-reader", err)
			return false
		}
		return true
	}
	for r.st == nil && r.probe != nil && n-k >= r.room && r.probe.Readable() {
		k2, err := r.dev.Read(bufs[k:n], sizes[k:n], Headroom)
		if err != nil || k2 == 0 {
			break // the next blocking read reports it
		}
		k += k2
	}
	c.Batches.Add(1)
	c.BatchSize.Observe(k)
	e := r.e
	e.start(d.table.Load(), d.now(), idx[k:n])
	var rxBytes uint64
	for i := range k {
		rxBytes += uint64(sizes[i])
		d.egressPacket(e, bufs[i], idx[i], Headroom, Headroom+sizes[i])
	}
	if r.st != nil && r.st.pending {
		d.egressSuper(e, r.st)
	}
	if len(e.icmps) > 0 {
		if err := d.writeAll(r.iw, e.icmps); err != nil {
			d.fatal("device-writer", err)
			return false
		}
		e.icmps = e.icmps[:0]
	}
	c.RxPackets.Add(uint64(k))
	if r.answered != nil {
		r.answered.Add(uint64(k))
	}
	c.RxBytes.Add(rxBytes)
	r.held = d.bufs.keep(idx, e.free, false)
	out := e.out
	copy(bufs, bufs[k:n])
	copy(have, have[k:n])
	if r.uw != nil {
		if err := d.writeAll(r.uw, out); err != nil {
			d.fatal("underlay-writer", err)
			return false
		}
	} else if m := q.underlayHandoff.put(out, d.done); m < len(out) {
		d.dropNotHandedOn(out[m:], c)
		return false
	}
	return true
}

// answerer is a queue's second reader, which any underlay reader runs
// right after writing packets whose answers the steering program puts on
// this queue; busy keeps it to one at a time (another that finds it busy
// goes on: the one running it will read what is there).
type answerer struct {
	view device.Device // device.Share's view of the queue
	r    *deviceReader // made in Start
	busy atomic.Bool
}

// replyQueues returns the set of queues (bit i: queue i, the first 64)
// where the kernel will put its answers to the inner packets rx.
func (d *Dataplane) replyQueues(rx []packet, l2 int) uint64 {
	n := len(d.queues)
	if len(rx) == 0 {
		return 0
	}
	if n == 1 {
		return 1
	}
	var set uint64
	for i := range rx {
		p := &rx[i]
		if q := flowhash.Queue(d.bufs.buf(p.idx)[p.off:p.end], l2, n, true); q < 64 {
			set |= 1 << q
		}
	}
	return set
}

// answer runs the second reader of each queue in set. It reports false
// when the reader stopped the data plane (a failed stage, reported).
func (d *Dataplane) answer(set uint64) bool {
	for set != 0 {
		i := bits.TrailingZeros64(set)
		set &^= 1 << i
		a := d.queues[i].answer
		if a == nil || !a.busy.CompareAndSwap(false, true) {
			continue
		}
		ok := a.r.step()
		a.busy.Store(false)
		if !ok {
			return false
		}
	}
	return true
}
