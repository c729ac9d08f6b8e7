package dataplane

import (
	"net/netip"

	"tunnelplane/dataplane/bpfpath"
	"tunnelplane/dataplane/stats"
)

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

// stage names one pipeline stage's Counters in a queue.
type stage int

const (
	stageDeviceRead stage = iota
	stageUnderlayWrite
	stageUnderlayRead
	stageDeviceWrite
)

func (q *queueSet) counters(st stage) *stats.Counters {
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

// sum adds up one stage's counters over all queues.
func (d *Dataplane) sum(st stage) stats.Sum {
	var s stats.Sum
	for _, q := range d.queues {
		s.Add(q.counters(st))
	}
	return s
}

// Stats sums the stages' counters over all queues.
func (d *Dataplane) Stats() stats.Totals {
	dr, uw, ur, dw := d.sum(stageDeviceRead), d.sum(stageUnderlayWrite), d.sum(stageUnderlayRead), d.sum(stageDeviceWrite)
	s := stats.Totals{
		EgressRxPackets:  dr.RxPackets,
		EgressTxPackets:  uw.TxPackets,
		EgressTxBytes:    uw.TxBytes,
		IngressRxPackets: ur.RxPackets,
		IngressRxBytes:   ur.RxBytes,
		IngressTxPackets: dw.TxPackets,
		Drops:            map[string]uint64{},
		DeviceReads:      dr.Batches,
		UnderlayWrites:   uw.Batches,
		UnderlayReads:    ur.Batches,
		DeviceWrites:     dw.Batches,
		PartialChecksums: dw.PartialCsum,
		SuperPackets:     ur.Supers.Count(),
	}
	for _, c := range []*stats.Sum{&dr, &uw, &ur, &dw} {
		for r, v := range c.Drops {
			if v > 0 {
				s.Drops[stats.Drop(r).String()] += v
			}
		}
	}
	return s
}

// Snapshot reads every counter and gauge the metrics exporter shows.
func (d *Dataplane) Snapshot() stats.Snapshot {
	tbl := d.table.Load()
	s := stats.Snapshot{
		DeviceRead:    d.sum(stageDeviceRead),
		UnderlayWrite: d.sum(stageUnderlayWrite),
		UnderlayRead:  d.sum(stageUnderlayRead),
		DeviceWrite:   d.sum(stageDeviceWrite),
		PoolFreeSmall: d.bufs.small.Free(),
		PoolFreeLarge: d.bufs.large.Free(),
		NumPeers:      len(tbl.Peers),
		Peers:         make([]stats.PeerSnapshot, 0, len(tbl.Peers)),
	}
	for _, q := range d.queues {
		s.RingTx += q.underlayHandoff.len()
		s.RingRx += q.deviceHandoff.len()
		s.Queues = append(s.Queues, stats.QueueSnapshot{
			DeviceRead: q.egress.RxPackets.Load(), UnderlayWrite: q.uwriter.TxPackets.Load(),
			UnderlayRead: q.ureader.RxPackets.Load(), DeviceWrite: q.dwriter.TxPackets.Load(),
			DeviceAnswer: q.answered.Load()})
	}
	// What the kernel path carried for a peer counts as the peer's too:
	// one set of per-peer counters, whichever path a packet took.
	var kc map[netip.Addr]bpfpath.PeerCounters
	if kp := d.parts.KernelPath; kp != nil {
		kc, _ = kp.PeerCounters() // closed or unreadable: the user-space counts alone
	}
	for _, p := range tbl.Peers {
		if st := p.stats; st != nil {
			k := kc[p.Remote]
			s.Peers = append(s.Peers, stats.PeerSnapshot{Remote: p.Remote,
				RxPackets: st.RxPackets.Load() + k.RxPackets, RxBytes: st.RxBytes.Load() + k.RxBytes,
				TxPackets: st.TxPackets.Load() + k.TxPackets, TxBytes: st.TxBytes.Load() + k.TxBytes})
		}
	}
	return s
}
