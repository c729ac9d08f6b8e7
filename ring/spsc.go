package ring

import "sync/atomic"

// SPSC is a bounded single-producer/single-consumer ring (Lamport 1983) with
// cached indices. Exactly one goroutine at a time may call the producer
// methods (Enqueue, EnqueueBatch) and exactly one the consumer methods
// (Dequeue, DequeueBatch); Len and Cap may be called from anywhere.
// Handing a role to another goroutine needs a happens-before edge between
// the old and the new owner (a channel send, a WaitGroup, ...).
//
// The zero value is not usable; call NewSPSC.
type SPSC[T any] struct {
	_ pad
	// Read-only after construction, shared by both sides.
	buf        []T
	mask       uint64
	clearSlots bool // T holds pointers: zero slots on dequeue
	_          pad
	// Producer side. tail is read by the consumer only when its cache runs
	// dry; headCache is private to the producer.
	tail      atomic.Uint64 // next position to write
	headCache uint64        // last head the producer observed
	_         pad
	// Consumer side, the mirror image.
	head      atomic.Uint64 // next position to read
	tailCache uint64        // last tail the consumer observed
	_         pad
}

// NewSPSC returns an empty ring holding up to capacity elements, capacity
// rounded up to a power of two. It panics if capacity < 1 (or > 1<<30).
func NewSPSC[T any](capacity int) *SPSC[T] {
	size := roundCapacity("NewSPSC", capacity)
	return &SPSC[T]{
		buf:        make([]T, size),
		mask:       size - 1,
		clearSlots: needsClear[T](),
	}
}

// Enqueue appends v and reports true, or reports false if the ring is full.
// Producer only.
func (r *SPSC[T]) Enqueue(v T) bool {
	t := r.tail.Load()
	if t-r.headCache > r.mask {
		r.headCache = r.head.Load()
		if t-r.headCache > r.mask {
			return false
		}
	}
	r.buf[t&r.mask] = v
	r.tail.Store(t + 1) // publishes the slot
	return true
}

// EnqueueBatch appends the longest prefix of vs that fits and returns its
// length (0 when full). Producer only.
func (r *SPSC[T]) EnqueueBatch(vs []T) int {
	t := r.tail.Load()
	want := uint64(len(vs))
	free := r.mask + 1 - (t - r.headCache)
	if free < want {
		r.headCache = r.head.Load()
		free = r.mask + 1 - (t - r.headCache)
	}
	n := min(want, free)
	if n == 0 {
		return 0
	}
	i := t & r.mask
	c := copy(r.buf[i:], vs[:n]) // up to the end of buf ...
	copy(r.buf, vs[c:n])         // ... and the rest from the start
	r.tail.Store(t + n)
	return int(n)
}

// Dequeue removes and returns the oldest element, or reports false if the
// ring is empty. Consumer only.
func (r *SPSC[T]) Dequeue() (v T, ok bool) {
	h := r.head.Load()
	if h == r.tailCache {
		r.tailCache = r.tail.Load()
		if h == r.tailCache {
			return v, false
		}
	}
	i := h & r.mask
	v = r.buf[i]
	if r.clearSlots {
		var zero T
		r.buf[i] = zero
	}
	r.head.Store(h + 1) // hands the slot back to the producer
	return v, true
}

// DequeueBatch moves the oldest elements into a prefix of out, as many as
// are available and fit, and returns how many. Consumer only.
func (r *SPSC[T]) DequeueBatch(out []T) int {
	h := r.head.Load()
	want := uint64(len(out))
	avail := r.tailCache - h
	if avail < want {
		r.tailCache = r.tail.Load()
		avail = r.tailCache - h
	}
	n := min(want, avail)
	if n == 0 {
		return 0
	}
	i := h & r.mask
	c := copy(out[:n], r.buf[i:])
	copy(out[c:n], r.buf)
	if r.clearSlots {
		clear(r.buf[i : i+uint64(c)])
		clear(r.buf[:n-uint64(c)])
	}
	r.head.Store(h + n)
	return int(n)
}

// Len returns the number of queued elements. It is exact when called by the
// producer or the consumer with the other side idle, approximate otherwise.
func (r *SPSC[T]) Len() int {
	h := r.head.Load() // head first: tail read afterwards is >= it
	t := r.tail.Load()
	return int(min(t-h, r.mask+1))
}

// Cap returns the capacity (a power of two).
func (r *SPSC[T]) Cap() int { return int(r.mask + 1) }
