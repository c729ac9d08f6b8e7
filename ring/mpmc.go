package ring

import "sync/atomic"

// MPMC is a bounded multi-producer/multi-consumer ring after Dmitry Vyukov's
// bounded MPMC queue: every slot carries a sequence number that says whose
// turn it is, producers and consumers claim positions by CAS on their own
// counter. Any number of goroutines may call any method concurrently.
//
// It is not strictly lock-free: a goroutine preempted between claiming a
// position and publishing it holds up that one slot (consumers see the ring
// as empty there, producers as full once they lap it) until it resumes.
//
// The zero value is not usable; call NewMPMC.
type MPMC[T any] struct {
	_ pad
	// Read-only after construction.
	seqs       []atomic.Uint64 // per-slot turn, see below
	vals       []T
	mask       uint64
	clearSlots bool
	_          pad
	enq        atomic.Uint64 // next position to claim for writing
	_          pad
	deq        atomic.Uint64 // next position to claim for reading
	_          pad
}

// The sequence number of a slot says whose turn it is. For position p
// mapped to slot p&mask:
// seq == p: free, the producer of p may write it;
// seq == p+1: holds p's value, the consumer of p may read it;
// seq == p+cap: emptied, free for position p+cap (the next lap).
// Sequence numbers and values live in separate arrays: a batch scans up to
// 8 sequence numbers per cache line, and copies values with copy(). Slots
// are not padded: neighbouring slots are mostly touched in order, by one
// side at a time.

// NewMPMC returns an empty ring holding up to capacity elements, capacity
// rounded up to a power of two and to at least 2: in a one-slot ring the
// sequence number meaning "holds the value of p" (p+1) would equal the one
// meaning "free for p+1". It panics if capacity < 1 (or > 1<<30).
func NewMPMC[T any](capacity int) *MPMC[T] {
	size := max(roundCapacity("NewMPMC", capacity), 2)
	r := &MPMC[T]{
		seqs:       make([]atomic.Uint64, size),
		vals:       make([]T, size),
		mask:       size - 1,
		clearSlots: needsClear[T](),
	}
	for i := range r.seqs {
		r.seqs[i].Store(uint64(i))
	}
	return r
}

// Enqueue appends v and reports true, or reports false if the ring is full.
func (r *MPMC[T]) Enqueue(v T) bool {
	pos := r.enq.Load()
	for {
		i := pos & r.mask
		switch dif := int64(r.seqs[i].Load() - pos); {
		case dif == 0:
			if r.enq.CompareAndSwap(pos, pos+1) {
				r.vals[i] = v
				r.seqs[i].Store(pos + 1) // publishes the slot
				return true
			}
			pos = r.enq.Load()
		case dif < 0:
			// The slot still holds the value of pos-cap: full.
			return false
		default:
			// Another producer claimed pos already; catch up.
			pos = r.enq.Load()
		}
	}
}

// EnqueueBatch appends the longest prefix of vs that fits and returns its
// length (0 when full). The prefix is claimed with a single CAS; see the
// package documentation for why that is safe.
func (r *MPMC[T]) EnqueueBatch(vs []T) int {
	want := min(uint64(len(vs)), r.mask+1)
	if want == 0 {
		return 0
	}
	pos := r.enq.Load()
	for {
		// Count the free slots from pos on.
		n := uint64(0)
		var dif int64
		for n < want {
			dif = int64(r.seqs[(pos+n)&r.mask].Load() - (pos + n))
			if dif != 0 {
				break
			}
			n++
		}
		if n == 0 {
			if dif < 0 {
				return 0 // full
			}
			pos = r.enq.Load()
			continue
		}
		if r.enq.CompareAndSwap(pos, pos+n) {
			i := pos & r.mask
			c := copy(r.vals[i:], vs[:n])
			copy(r.vals, vs[c:n])
			for k := range n {
				r.seqs[(pos+k)&r.mask].Store(pos + k + 1) // publishes slot k: after its value
			}
			return int(n)
		}
		pos = r.enq.Load()
	}
}

// Dequeue removes and returns the oldest element, or reports false if the
// ring is empty (or its oldest element is still being published).
func (r *MPMC[T]) Dequeue() (v T, ok bool) {
	pos := r.deq.Load()
	for {
		i := pos & r.mask
		switch dif := int64(r.seqs[i].Load() - (pos + 1)); {
		case dif == 0:
			if r.deq.CompareAndSwap(pos, pos+1) {
				v = r.vals[i]
				if r.clearSlots {
					var zero T
					r.vals[i] = zero
				}
				r.seqs[i].Store(pos + r.mask + 1) // hands the slot to the next lap
				return v, true
			}
			pos = r.deq.Load()
		case dif < 0:
			return v, false // empty
		default:
			pos = r.deq.Load()
		}
	}
}

// DequeueBatch moves the oldest elements into a prefix of out, as many as
// are published and fit, and returns how many. One CAS claims them all.
func (r *MPMC[T]) DequeueBatch(out []T) int {
	want := min(uint64(len(out)), r.mask+1)
	if want == 0 {
		return 0
	}
	pos := r.deq.Load()
	for {
		n := uint64(0)
		var dif int64
		for n < want {
			dif = int64(r.seqs[(pos+n)&r.mask].Load() - (pos + n + 1))
			if dif != 0 {
				break
			}
			n++
		}
		if n == 0 {
			if dif < 0 {
				return 0 // empty
			}
			pos = r.deq.Load()
			continue
		}
		if r.deq.CompareAndSwap(pos, pos+n) {
			i := pos & r.mask
			c := copy(out[:n], r.vals[i:])
			copy(out[c:n], r.vals)
			if r.clearSlots {
				clear(r.vals[i : i+uint64(c)])
				clear(r.vals[:n-uint64(c)])
			}
			lap := r.mask + 1
			for k := range n {
				r.seqs[(pos+k)&r.mask].Store(pos + k + lap) // releases slot k: after its read
			}
			return int(n)
		}
		pos = r.deq.Load()
	}
}

// Len returns the number of claimed-for-writing minus claimed-for-reading
// positions, clamped to [0, Cap]. Approximate when racing.
func (r *MPMC[T]) Len() int {
	d := r.deq.Load()
	e := r.enq.Load()
	if int64(e-d) < 0 {
		return 0
	}
	return int(min(e-d, r.mask+1))
}

// Cap returns the capacity (a power of two).
func (r *MPMC[T]) Cap() int { return int(r.mask + 1) }
