// Package ring owns the data plane's hand-over structures: bounded
// lock-free rings with batch operations and the packet buffer pool.
//
// ring imports nothing of the project.
//
// # SPSC: Lamport's ring with cached indices
//
// SPSC is the single-producer/single-consumer ring of L. Lamport, "Specifying
// Concurrent Program Modules" (ACM TOPLAS, 1983): a power-of-two array and
// two free-running 64-bit counters, tail (written only by the producer) and
// head (written only by the consumer). The ring holds tail-head elements;
// position p lives in slot p&mask. The counters never wrap in practice
// (2^64 operations), so full is tail-head == cap and empty is tail == head,
// with no slot wasted.
//
// Each side also keeps a private copy of the other side's counter
// (headCache, tailCache) and re-reads the shared one only when the copy says
// full (producer) or empty (consumer). In steady streaming the producer
// touches the consumer's cache line about once per lap instead of once per
// element, and vice versa; that, and keeping the two sides on separate
// cache lines, is most of the speed.
//
// # MPMC: Vyukov's bounded queue
//
// MPMC is Dmitry Vyukov's bounded MPMC queue (1024cores.net, "Bounded MPMC
// queue"). Producers share the counter enq, consumers the counter deq; every
// slot carries a sequence number seq. For position p in slot p&mask:
//
//	seq == p        the slot is free for the producer of p
//	seq == p+1      the slot holds p's value for the consumer of p
//	seq == p+cap    the consumer is done; free for position p+cap
//
// A producer reads pos = enq, checks seq == pos, claims pos with
// CAS(enq, pos, pos+1), writes the value and stores seq = pos+1. seq < pos
// means the slot still holds the value of the previous lap: the ring is full.
// Consumers mirror this with deq, seq == pos+1 and seq = pos+cap.
// Capacity is at least 2: in a one-slot ring "holds the value of p" (p+1)
// and "free for p+1" would be the same number. Sequence numbers and values
// live in separate arrays, so a batch scans dense sequence numbers and moves
// values with copy().
//
// Batches claim with one CAS: the caller scans forward from pos and counts
// the n consecutive slots whose seq says "ready for this position", then
// CAS(enq, pos, pos+n). The CAS is a valid claim of all n slots at once:
// a slot with seq == pos+k can only be changed by whoever claims position
// pos+k, and no one else can have claimed any of pos..pos+n-1 while enq
// still equals pos (the counters only grow, so the CAS cannot succeed on an
// ABA value). Values are then written and published in position order, so
// consumers see a batch become available as a growing prefix. Consumers
// batch the same way on deq. A batch of n costs one CAS and n seq stores
// instead of n CASes, which is what makes MPMC batches cheap under
// contention.
//
// MPMC is not strictly lock-free: a goroutine preempted between its CAS and
// its seq store holds up that slot (it reads as empty to consumers, and as
// full to producers once they lap it). But no operation ever waits for
// another: it succeeds or reports empty/full. Callers that must not fail
// (Pool.Put) retry with runtime.Gosched.
//
// Why not DPDK rte_ring's claim/commit indices (CAS a head, copy, wait for
// the predecessor's commit, store a tail), which make a batch cost one CAS
// and one store instead of one store per element? It was measured here:
// batches ran 55-65 M items/s against Vyukov's 35, but a claimant waits while
// holding its own claim, so with more goroutines than Ps (normal in Go, and
// this machine has 2 cores) a descheduled claimant stalls every later one:
// the 4-producer/4-consumer stress test took 12 s instead of 0.15 s. The
// per-element store is the price of never waiting.
//
// # Memory ordering
//
// Go's sync/atomic operations are sequentially consistent (the Go memory
// model: if the effect of atomic A is observed by atomic B, A is
// synchronized before B), so each atomic store here is at least a release and
// each atomic load at least an acquire. The ordinary (non-atomic) slot writes
// and reads are ordered by these edges:
//
//   - SPSC: the producer writes buf[t&mask], then tail.Store(t+1) publishes
//     it; the consumer's tail.Load that returns > t acquires it before
//     reading the slot. In the other direction the consumer reads (and
//     zeroes) the slot, then head.Store(h+1) releases it; the producer's
//     head.Load acquires the slot before overwriting it. The cached copies
//     are only ever older values of these counters, so they can claim less,
//     never more.
//   - MPMC: the producer's seq.Store(pos+1) publishes the value; the
//     consumer's seq.Load that returns pos+1 acquires it. The consumer's
//     seq.Store(pos+cap) releases the slot; the next producer's seq.Load
//     that returns pos+cap acquires it. The CASes on enq and deq only decide
//     who owns a position; they carry no data.
//
// The race detector understands these edges, so the -race tests check the
// argument as well as the code.
//
// # Zeroing dequeued slots
//
// When T contains pointers (decided once per ring with reflect at
// construction), Dequeue and DequeueBatch zero the slot they empty, so a
// ring does not keep dequeued objects alive until the slot is reused. For
// pointer-free T (buffer indices, packet descriptors of integers) the slot
// is left as is: zeroing is pure cost there, and the check is one
// predictable branch on a read-only field.
//
// # Pool
//
// Pool is one slab of count fixed-size buffers, each starting with Headroom
// bytes for the outer headers, addressed by uint32 index so rings carry
// 4-byte handles, not slices. Its free list is an MPMC ring of indices with
// capacity >= count: Get/GetBatch never allocate and never wait (an empty
// free list returns fewer buffers), Put never fails. EnableDebug adds an
// atomic per-buffer state changed by CAS that turns a double Put into a
// panic naming the buffer.
package ring
