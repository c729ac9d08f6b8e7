package ring

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// Headroom is the space reserved in front of every packet for the outer headers
// (largest stack: IPv6 40 + UDP 8 + VXLAN 8 + Ethernet 14 = 70) plus the 10-byte
// virtio-net header a TUN with offloads writes, rounded up to a cache-line multiple.
const Headroom = 128

// Pool hands out fixed-size packet buffers from one slab, by index. The free
// list is an MPMC ring of indices, so Get and Put are safe from any number of
// goroutines, never allocate, and Get never waits: an empty free list means
// the caller drops the packet (and counts it).
//
// Ownership: a buffer index returned by Get belongs to its holder until it is
// passed to Put exactly once. Putting a free buffer again is a bug; with
// EnableDebug it panics, without it the buffer may be handed out twice.
type Pool struct {
	slab  []byte
	size  int
	count int
	free  *MPMC[uint32]

	debug bool            // set once by EnableDebug, before use
	state []atomic.Uint32 // debug only: bufFree or bufTaken per buffer
}

const (
	bufFree uint32 = iota
	bufTaken
)

// NewPool allocates one slab of count*size bytes up front. size is the full
// buffer size including Headroom. Panics if count<1 or size<Headroom.
func NewPool(count, size int) *Pool {
	if count < 1 || count > maxCapacity {
		panic(fmt.Sprintf("ring: NewPool: count %d out of range [1, %d]", count, maxCapacity))
	}
	if size < Headroom {
		panic(fmt.Sprintf("ring: NewPool: size %d smaller than Headroom (%d)", size, Headroom))
	}
	if uint64(count)*uint64(size) > uint64(^uint(0)>>1) {
		panic(fmt.Sprintf("ring: NewPool: %d buffers of %d bytes overflow int", count, size))
	}
	p := &Pool{
		slab:  make([]byte, count*size),
		size:  size,
		count: count,
		free:  NewMPMC[uint32](count),
	}
	idx := make([]uint32, count)
	for i := range idx {
		idx[i] = uint32(i)
	}
	if p.free.EnqueueBatch(idx) != count {
		panic("ring: NewPool: free list too small") // unreachable: cap >= count
	}
	return p
}

// EnableDebug turns on ownership tracking (call before use; meant for
// tests): a double Put panics naming the index, and Get marks each buffer as
// taken. It costs one predictable branch per call when disabled.
func (p *Pool) EnableDebug() {
	if p.debug {
		return
	}
	p.state = make([]atomic.Uint32, p.count)
	p.debug = true
}

// Buf returns the whole buffer i, Headroom included, with its capacity cut
// at the buffer's end so an append cannot spill into the neighbour.
func (p *Pool) Buf(i uint32) []byte {
	lo := int(i) * p.size
	hi := lo + p.size
	return p.slab[lo:hi:hi]
}

// Get takes a free buffer, or reports false when the pool is exhausted. It
// may also report false while the only free buffers are still being put
// back by a concurrent Put.
func (p *Pool) Get() (uint32, bool) {
	i, ok := p.free.Dequeue()
	if ok && p.debug {
		p.markTaken(i)
	}
	return i, ok
}

// GetBatch fills a prefix of out with free buffers and returns how many;
// fewer than len(out) when the pool runs low.
func (p *Pool) GetBatch(out []uint32) int {
	n := p.free.DequeueBatch(out)
	if p.debug {
		for _, i := range out[:n] {
			p.markTaken(i)
		}
	}
	return n
}

// Put returns buffer i to the pool. It panics if i is out of range.
func (p *Pool) Put(i uint32) {
	if i >= uint32(p.count) {
		panicRange(i, p.count)
	}
	if p.debug {
		p.markFree(i)
	}
	// The free list always has room for every buffer; Enqueue fails only
	// while a Get preempted mid-dequeue still holds the slot this Put needs.
	for !p.free.Enqueue(i) {
		runtime.Gosched()
	}
}

// PutBatch returns all buffers in in to the pool. It panics if any index is
// out of range (before returning any of them).
func (p *Pool) PutBatch(in []uint32) {
	for _, i := range in {
		if i >= uint32(p.count) {
			panicRange(i, p.count)
		}
	}
	if p.debug {
		for _, i := range in {
			p.markFree(i)
		}
	}
	for len(in) > 0 {
		n := p.free.EnqueueBatch(in)
		if n == 0 {
			runtime.Gosched()
		}
		in = in[n:]
	}
}

// Free returns the number of free buffers (approximate when racing).
func (p *Pool) Free() int { return p.free.Len() }

// Cap returns the number of buffers.
func (p *Pool) Cap() int { return p.count }

// BufSize returns the size of each buffer, Headroom included.
func (p *Pool) BufSize() int { return p.size }

func (p *Pool) markTaken(i uint32) {
	if !p.state[i].CompareAndSwap(bufFree, bufTaken) {
		panic(fmt.Sprintf("ring: Pool.Get: buffer %d handed out while already taken (pool corrupted)", i))
	}
}

func (p *Pool) markFree(i uint32) {
	if !p.state[i].CompareAndSwap(bufTaken, bufFree) {
		panic(fmt.Sprintf("ring: Pool.Put: buffer %d is already free (double Put)", i))
	}
}

func panicRange(i uint32, count int) {
	panic(fmt.Sprintf("ring: Pool.Put: buffer index %d out of range [0, %d)", i, count))
}
