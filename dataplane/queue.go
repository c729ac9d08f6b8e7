package dataplane

import (
	"sync/atomic"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/stats"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/ring"
)

// packet is what moves between stages: a reference into the pool, never a
// copy of the bytes. Ownership moves with it; whoever finishes with it puts
// idx back into the pool.
type packet struct {
	idx      uint32
	off, end int32
	peer     *Peer // egress: destination peer; ingress: source peer
	big      bool  // egress: larger than the path MTU; the kernel fragments it
	tos      uint8 // egress with tos: inherit: the outer TOS / traffic class
	// borrowed: the bytes lie in a buffer that another owner returns to
	// the pool (a segment of a UDP GRO read); whoever finishes with this
	// packet does not put idx back.
	borrowed bool
	// gso > 0: ingress, an inner GSO super-packet for the device to
	// segment into datagrams of gso payload bytes (partial.go); egress, a
	// whole frame for the UDP-tunnel GSO TAP, virtio header first
	// (tnlgso.go).
	gso uint16
}

// batchRing is what a handoff needs of ring.SPSC and ring.MPMC.
type batchRing interface {
	EnqueueBatch([]packet) int
	DequeueBatch([]packet) int
	Len() int
}

// handoff joins two stages of pipeline: rings. The ring carries the
// packets; two one-slot channels carry the wake-ups, one per batch rather
// than per packet, so that an idle stage sleeps in the scheduler instead
// of spinning on one of this machine's two cores.
type handoff struct {
	r     batchRing
	ready chan struct{} // something was enqueued
	space chan struct{} // something was dequeued
}

func newHandoff(r batchRing) *handoff {
	return &handoff{r: r, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func (q *handoff) len() int { return q.r.Len() }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put enqueues all of ps, waiting for room while the ring is full. It
// returns how many it enqueued: fewer only when done is closed.
func (q *handoff) put(ps []packet, done <-chan struct{}) int {
	n := 0
	for {
		n += q.r.EnqueueBatch(ps[n:])
		if n > 0 {
			signal(q.ready)
		}
		if n == len(ps) {
			return n
		}
		select {
		case <-q.space:
		case <-done:
			return n
		}
	}
}

// get dequeues at least one packet into out, waiting while the ring is
// empty. It returns 0 only when done is closed.
func (q *handoff) get(out []packet, done <-chan struct{}) int {
	for {
		if n := q.r.DequeueBatch(out); n > 0 {
			signal(q.space)
			return n
		}
		select {
		case <-q.ready:
		case <-done:
			return 0
		}
	}
}

var (
	_ batchRing = (*ring.SPSC[packet])(nil)
	_ batchRing = (*ring.MPMC[packet])(nil)
)

// queueSet is one device queue with the sockets and handoffs its
// goroutines use ("queue" always means a device queue; the rings between
// stages are handoffs). Every goroutine of a queue counts into the queue's
// own Counters.
type queueSet struct {
	id              int
	dev             device.Device
	answer          *answerer       // direct pipeline: dev's second reader, for the underlay readers (devreader.go), or nil
	recv            underlay.Reader // underlay socket this queue reads; nil if another queue reads for it
	send            underlay.Sender // underlay socket this queue's egress sends through
	underlayHandoff *handoff        // pipeline rings: encapsulated packets and replies -> underlay writer
	deviceHandoff   *handoff        // pipeline rings: decapsulated packets -> device writer

	egress, uwriter, ureader, dwriter stats.Counters
	answered                          atomic.Uint64 // packets the underlay reader read from dev (devreader.go)
}
