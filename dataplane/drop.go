package dataplane

import (
	"sync/atomic"

	"tunnelplane/encap"
)

// Drop is why the data plane let go of a packet. Every drop anywhere in the
// data plane has exactly one reason, and every reason is counted.
//
// The first encap.NumDropReasons values mirror encap.DropReason one to one,
// so a wire-format verdict converts by a plain cast.
type Drop uint8

const (
	// Reasons the data plane adds to the wire-format ones.
	DropUnknownPeer    Drop = Drop(encap.NumDropReasons) + iota // outer source is no configured peer
	DropSpoofedInner                                            // inner source outside the sending peer's prefixes
	DropNoRoute                                                 // no peer for the inner destination (L3) and nothing to flood (L2)
	DropNotIP                                                   // device handed us something that is not IPv4/IPv6
	DropBadEtherType                                            // VXLAN frame in TUN mode that is neither IP nor a neighbour request
	DropNotForUs                                                // VXLAN frame in TUN mode for another MAC, or ARP/NDP for an address we do not own
	DropNeighMalformed                                          // broken ARP/NDP
	DropFamily                                                  // inner family the tunnel cannot carry (e.g. IPv6 into IPIP)
	DropTooBig                                                  // inner packet plus headers larger than the buffer or underlay allows
	DropPoolExhausted                                           // no free buffer (flooding, replies)
	DropRingFull                                                // hand-over ring full at shutdown
	DropDeviceWrite                                             // device refused the write
	DropUnderlayWrite                                           // sendmmsg failed for this packet
	DropLoop                                                    // frame learned from / sent back to its own source
	DropInnerOversize                                           // inner packet over the device MTU that is no TCP/UDP super-packet
	DropInnerChecksum                                           // inner super-packet whose checksum is neither partial nor correct
	NumDrops
)

var dataplaneDropNames = [...]string{
	"unknown_peer", "spoofed_inner", "no_route", "not_ip", "bad_ethertype",
	"not_for_us", "neigh_malformed", "family", "too_big", "pool_exhausted",
	"ring_full", "device_write", "underlay_write", "loop", "inner_oversize",
	"inner_checksum",
}

// String returns the snake_case label used in logs and metrics.
func (d Drop) String() string {
	if d < Drop(encap.NumDropReasons) {
		return encap.DropReason(d).String()
	}
	i := int(d) - int(encap.NumDropReasons)
	if i < len(dataplaneDropNames) {
		return dataplaneDropNames[i]
	}
	return "unknown"
}

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
	// Underlay reader: inner super-packets received (SuperBuckets, bytes).
	Supers Hist
	// Device writer: inner packets whose checksum was partial (partial.go).
	PartialCsum atomic.Uint64
	Drops       [NumDrops]atomic.Uint64
	_           [64]byte
}

func (c *Counters) drop(d Drop) { c.Drops[d].Add(1) }

// HistBuckets are the upper bounds of Hist's buckets: powers of two up to
// 128 (a batch or a GSO train is never larger), then +Inf.
var HistBuckets = [...]float64{1, 2, 4, 8, 16, 32, 64, 128}

// Hist is a fixed-bucket histogram cheap enough to fill once per batch.
type Hist struct {
	Buckets [len(HistBuckets) + 1]atomic.Uint64 // not cumulative; the last is +Inf
	Sum     atomic.Uint64
}

func (h *Hist) observe(v int) { h.observeN(v, 1) }

// observeN records n observations of v: one pair of atomic adds for many.
func (h *Hist) observeN(v int, n uint64) { h.observeIn(&HistBuckets, v, n) }

// observeIn records n observations of v into buckets with the given upper
// bounds.
func (h *Hist) observeIn(bounds *[len(HistBuckets)]float64, v int, n uint64) {
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

// peerRun accumulates the counts of consecutive packets of one peer so that
// a batch costs one atomic add per run instead of one per packet.
type peerRun struct {
	p              *Peer
	packets, bytes uint64
}

func (r *peerRun) add(p *Peer, n int, tx bool) {
	if p != r.p {
		r.flush(tx)
		r.p = p
	}
	r.packets++
	r.bytes += uint64(n)
}

func (r *peerRun) flush(tx bool) {
	if r.p != nil && r.p.stats != nil && r.packets > 0 {
		if tx {
			r.p.stats.TxPackets.Add(r.packets)
			r.p.stats.TxBytes.Add(r.bytes)
		} else {
			r.p.stats.RxPackets.Add(r.packets)
			r.p.stats.RxBytes.Add(r.bytes)
		}
	}
	*r = peerRun{}
}

// Stats is a summed, point-in-time copy of all stages' counters.
type Stats struct {
	EgressRxPackets, EgressTxPackets, EgressTxBytes    uint64
	IngressRxPackets, IngressTxPackets, IngressRxBytes uint64
	Drops                                              map[string]uint64
	// Batches per stage: packets / batches is the mean batch size.
	DeviceReads, UnderlayWrites, UnderlayReads, DeviceWrites uint64
	// Inner packets received with a partial checksum, and inner
	// super-packets received (partial.go).
	PartialChecksums, SuperPackets uint64
}

// stage names one pipeline stage's Counters in a queue.
type stage int

const (
	stageDeviceRead stage = iota
	stageUnderlayWrite
	stageUnderlayRead
	stageDeviceWrite
)

func (q *queueSet) counters(st stage) *Counters {
	switch st {
	case stageDeviceRead:
		return &q.egress
	case stageUnderlayWrite:
		return &q.uwriter
	case stageUnderlayRead:
		return &q.ureader
	}
	return &q.dwriter
}

// countersSnap is a plain copy of Counters, summed over queues.
type countersSnap struct {
	rxPackets, rxBytes, txPackets, txBytes, batches uint64
	batchSize, segments, supers                     histSnap
	partialCsum                                     uint64
	drops                                           [NumDrops]uint64
}

type histSnap struct {
	buckets [len(HistBuckets) + 1]uint64
	sum     uint64
}

func (h *histSnap) add(o *Hist) {
	for i := range h.buckets {
		h.buckets[i] += o.Buckets[i].Load()
	}
	h.sum += o.Sum.Load()
}

// sum adds up one stage's counters over all queues.
func (d *Dataplane) sum(st stage) countersSnap {
	var s countersSnap
	for _, q := range d.queues {
		c := q.counters(st)
		s.rxPackets += c.RxPackets.Load()
		s.rxBytes += c.RxBytes.Load()
		s.txPackets += c.TxPackets.Load()
		s.txBytes += c.TxBytes.Load()
		s.batches += c.Batches.Load()
		s.batchSize.add(&c.BatchSize)
		s.segments.add(&c.Segments)
		s.supers.add(&c.Supers)
		s.partialCsum += c.PartialCsum.Load()
		for r := range s.drops {
			s.drops[r] += c.Drops[r].Load()
		}
	}
	return s
}

// Stats sums the stages' counters over all queues.
func (d *Dataplane) Stats() Stats {
	dr, uw, ur, dw := d.sum(stageDeviceRead), d.sum(stageUnderlayWrite), d.sum(stageUnderlayRead), d.sum(stageDeviceWrite)
	s := Stats{
		EgressRxPackets:  dr.rxPackets,
		EgressTxPackets:  uw.txPackets,
		EgressTxBytes:    uw.txBytes,
		IngressRxPackets: ur.rxPackets,
		IngressRxBytes:   ur.rxBytes,
		IngressTxPackets: dw.txPackets,
		Drops:            map[string]uint64{},
		DeviceReads:      dr.batches,
		UnderlayWrites:   uw.batches,
		UnderlayReads:    ur.batches,
		DeviceWrites:     dw.batches,
		PartialChecksums: dw.partialCsum,
	}
	for _, v := range ur.supers.buckets {
		s.SuperPackets += v
	}
	for _, c := range []*countersSnap{&dr, &uw, &ur, &dw} {
		for r, v := range c.drops {
			if v > 0 {
				s.Drops[Drop(r).String()] += v
			}
		}
	}
	return s
}
