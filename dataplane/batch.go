package dataplane

import "net/netip"

// The state a reader goroutine carries through one batch, in one place
// instead of threaded through every call: the table snapshot it reads
// (the table may change between batches, never within one), the clock,
// the packets it has sorted so far, the buffers to give back, and its
// lookup memos. Each reader allocates its batch once and resets it per
// batch (start).

// peerMemo remembers the last address a batch looked up and the peer it
// found: a batch is mostly runs of one flow (a TSO super-packet's
// segments, a GRO train, a drained burst), and comparing an address is far
// cheaper than a lookup. Only a found peer is remembered.
type peerMemo struct {
	key  netip.Addr
	peer *Peer
}

// get returns the peer remembered for key, or nil.
func (m *peerMemo) get(key netip.Addr) *Peer {
	if m.peer != nil && key == m.key {
		return m.peer
	}
	return nil
}

// put remembers p (when not nil) for key and returns it.
func (m *peerMemo) put(key netip.Addr, p *Peer) *Peer {
	m.key, m.peer = key, p
	return p
}

// egressBatch is a device reader's batch.
type egressBatch struct {
	q     *queueSet
	tbl   *Table
	now   int64
	out   []packet // encapsulated, for the underlay writer
	free  []uint32 // buffers to return: unused or dropped
	icmps []packet // ICMP errors for the device (pmtu.go)
	dst   peerMemo // inner destination -> peer
}

// start resets e for a batch read with table tbl at now; unused are the
// buffers the read did not fill.
func (e *egressBatch) start(tbl *Table, now int64, unused []uint32) {
	e.tbl, e.now = tbl, now
	e.out, e.free = e.out[:0], append(e.free[:0], unused...)
	e.dst = peerMemo{}
}

// ingressBatch is an underlay reader's batch.
type ingressBatch struct {
	q      *queueSet
	tbl    *Table
	now    int64
	rx, tx []packet     // decapsulated, for the device; replies, for the underlay
	free   []uint32     // buffers to return: unused or dropped
	split  splitScratch // software split of super-packets (partial.go)
	from   peerMemo     // outer source -> peer
	src    peerMemo     // inner source -> peer, for anti-spoofing (allowed)
	// outerTOS is the outer TOS / traffic class of the datagram being
	// decapsulated: from the socket (UDP) or the outer header (raw IP),
	// for the ECN rule (encap.ECNDecap).
	outerTOS uint8
}

// start resets in for a batch read with table tbl at now; unused are the
// buffers the read did not fill.
func (in *ingressBatch) start(tbl *Table, now int64, unused []uint32) {
	in.tbl, in.now = tbl, now
	in.rx, in.tx, in.free = in.rx[:0], in.tx[:0], append(in.free[:0], unused...)
	in.from, in.src = peerMemo{}, peerMemo{}
}

// allowed reports whether inner source src lies in peer p's prefixes.
func (in *ingressBatch) allowed(p *Peer, src netip.Addr) bool {
	q := in.src.get(src)
	if q == nil {
		q = in.src.put(src, in.tbl.Lookup(src))
	}
	return q == p
}

// splitScratch is an underlay reader's scratch for superIngress's
// software split, allocated once per queue.
type splitScratch struct {
	ids   []uint32
	bufs  [][]byte
	sizes []int
}

// maxSplitSegments bounds a software split: 64 KiB at the smallest IPv6
// MTU's segment size.
const maxSplitSegments = 64

func newSplitScratch() splitScratch {
	return splitScratch{ids: make([]uint32, 0, maxSplitSegments), bufs: make([][]byte, maxSplitSegments), sizes: make([]int, maxSplitSegments)}
}
