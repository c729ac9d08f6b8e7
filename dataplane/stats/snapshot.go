package stats

import "net/netip"

// Sum is a plain copy of Counters, summed over the goroutines of one
// stage.
type Sum struct {
	RxPackets, RxBytes, TxPackets, TxBytes, Batches uint64
	BatchSize, Segments, Supers                     HistSum
	PartialCsum, PacketSocket                       uint64
	Drops                                           [NumDrops]uint64
}

// Add adds the current values of c.
func (s *Sum) Add(c *Counters) {
	s.RxPackets += c.RxPackets.Load()
	s.RxBytes += c.RxBytes.Load()
	s.TxPackets += c.TxPackets.Load()
	s.TxBytes += c.TxBytes.Load()
	s.Batches += c.Batches.Load()
	s.BatchSize.Add(&c.BatchSize)
	s.Segments.Add(&c.Segments)
	s.Supers.Add(&c.Supers)
	s.PartialCsum += c.PartialCsum.Load()
	s.PacketSocket += c.PacketSocket.Load()
	for r := range s.Drops {
		s.Drops[r] += c.Drops[r].Load()
	}
}

// HistSum is a plain copy of Hist: bucket counts (not cumulative; the
// last is +Inf) and the sum of the observations.
type HistSum struct {
	Buckets [len(HistBuckets) + 1]uint64
	Sum     uint64
}

// Add adds the current values of h.
func (h *HistSum) Add(o *Hist) {
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i].Load()
	}
	h.Sum += o.Sum.Load()
}

// Count is the number of observations.
func (h *HistSum) Count() uint64 {
	var n uint64
	for _, v := range h.Buckets {
		n += v
	}
	return n
}

// Totals is a summed, point-in-time copy of all stages' counters, as logs
// and tests read it.
type Totals struct {
	EgressRxPackets, EgressTxPackets, EgressTxBytes    uint64
	IngressRxPackets, IngressTxPackets, IngressRxBytes uint64
	Drops                                              map[string]uint64 // only reasons that occurred
	// Batches per stage: packets / batches is the mean batch size.
	DeviceReads, UnderlayWrites, UnderlayReads, DeviceWrites uint64
	// Inner packets received with a partial checksum, and inner
	// super-packets received.
	PartialChecksums, SuperPackets uint64
}

// Snapshot is what a metrics exporter reads of a running data plane, at
// one point in time: each pipeline stage's counters summed over the
// device queues, the pool and ring gauges, and the per-peer counters.
type Snapshot struct {
	DeviceRead, UnderlayWrite, UnderlayRead, DeviceWrite Sum
	PoolFreeSmall, PoolFreeLarge                         int // free buffers in each packet pool
	RingTx, RingRx                                       int // packets waiting in the hand-over rings, all queues
	NumPeers                                             int // peers in the current table
	Peers                                                []PeerSnapshot
	// Queues are each device queue's packet counts, to see how the flows
	// spread (steering on the way out, SO_REUSEPORT on the way in).
	Queues []QueueSnapshot
}

// QueueSnapshot is one queue's packets per stage: read from the device,
// written to the underlay, read from the underlay, written to the device;
// and DeviceAnswer, those of DeviceRead that the underlay reader read
// right after its own device write (the kernel's answers to it).
type QueueSnapshot struct {
	DeviceRead, UnderlayWrite, UnderlayRead, DeviceWrite uint64
	DeviceAnswer                                         uint64
}

// PeerSnapshot is one peer's PeerStats, by its underlay address.
type PeerSnapshot struct {
	Remote                                 netip.Addr
	RxPackets, RxBytes, TxPackets, TxBytes uint64
}
