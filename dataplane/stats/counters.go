package stats

import "sync/atomic"

// Counters belong to one goroutine (one pipeline stage) and are summed at
// read time, so the per-packet path never writes a cache line another core
// writes too. Stages add to them once per batch, not per packet. The
// fields are atomics only so that readers are race-free.
type Counters struct {
	RxPackets atomic.Uint64 // packets in from the source of this stage
	RxBytes   atomic.Uint64
	TxPackets atomic.Uint64 // packets out to the sink of this stage
	TxBytes   atomic.Uint64
	Batches   atomic.Uint64
	BatchSize Hist // packets per batch
	Segments  Hist // datagrams per GSO send (writers) or per GRO read (readers)
	// Underlay reader: inner super-packets received; underlay writer:
	// super-packets sent whole through the UDP-tunnel GSO TAP
	// (SuperBuckets, bytes).
	Supers Hist
	// Device writer: inner packets whose checksum was partial.
	PartialCsum atomic.Uint64
	// Underlay writer: packets sent through the packet socket.
	PacketSocket atomic.Uint64
	Drops        [NumDrops]atomic.Uint64
	_            [64]byte
}

// Drop counts one packet dropped for reason d.
func (c *Counters) Drop(d Drop) { c.Drops[d].Add(1) }

// HistBuckets are the upper bounds of Hist's buckets: powers of two up to
// 128 (a batch or a GSO train is never larger), then +Inf.
var HistBuckets = [...]float64{1, 2, 4, 8, 16, 32, 64, 128}

// Bounds are the upper bounds of a Hist's finite buckets.
type Bounds = [len(HistBuckets)]float64

// SuperBuckets are the upper bounds, in bytes, of the histogram of
// super-packets received (inner packets larger than the device MTU).
var SuperBuckets = Bounds{2048, 4096, 8192, 16384, 24576, 32768, 49152, 65536}

// Hist is a fixed-bucket histogram cheap enough to fill once per batch.
type Hist struct {
	Buckets [len(HistBuckets) + 1]atomic.Uint64 // not cumulative; the last is +Inf
	Sum     atomic.Uint64
}

// Observe records one observation of v (HistBuckets).
func (h *Hist) Observe(v int) { h.ObserveN(v, 1) }

// ObserveN records n observations of v: one pair of atomic adds for many.
func (h *Hist) ObserveN(v int, n uint64) { h.ObserveIn(&HistBuckets, v, n) }

// ObserveIn records n observations of v into buckets with the given upper
// bounds.
func (h *Hist) ObserveIn(bounds *Bounds, v int, n uint64) {
	if n == 0 {
		return
	}
	i := 0
	for i < len(bounds) && float64(v) > bounds[i] {
		i++
	}
	h.Buckets[i].Add(n)
	h.Sum.Add(uint64(v) * n)
}

// PeerStats counts one peer's traffic. It outlives table snapshots: a peer
// that stays across a reload keeps its counters. Receive and send sides
// are written by different goroutines, so they sit on separate cache lines.
type PeerStats struct {
	RxPackets, RxBytes atomic.Uint64 // from the peer, delivered to the device
	_                  [48]byte
	TxPackets, TxBytes atomic.Uint64 // sent to the peer
	_                  [48]byte
}
