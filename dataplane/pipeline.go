package dataplane

// The pipeline, one instance per device queue. Two shapes, chosen by the
// config key `pipeline`:
//
// direct (default): run to completion, two goroutines
//
//	egress:  device ──Read──▶ routineDeviceReader: classify, encap, sendmmsg ──▶ underlay
//	ingress: underlay ──recvmmsg──▶ routineUnderlayReader: validate, decap, Write ──▶ device
//	                                                      ├─ ARP/NDP replies: sendmmsg ──▶ underlay
//	                                                      └─ what the kernel answered during that
//	                                                         Write (inline_answers): the egress steps,
//	                                                         read from the answer's queue (devreader.go)
//
// rings: the readers hand packets to writer goroutines through lock-free rings
//
//	egress:  routineDeviceReader ──▶ underlayHandoff (MPMC) ──▶ routineWriter(underlayWriter) ──sendmmsg──▶
//	ingress: routineUnderlayReader ──▶ deviceHandoff (SPSC) ──▶ routineWriter(deviceWriter) ──Write──▶
//	                                └─ replies ──▶ underlayHandoff
//
// Why direct is the default: iperf3, one TCP stream through VXLAN between
// two tunnelds in namespaces on this 2-core machine (veth offloads on, 4 s
// runs alternated): direct 2.15 / 2.05 Gbit/s, rings 1.88 / 1.92; again
// after TCP coalescing with writev (5 s runs, alternated): direct 4.35 /
// 5.11 / 5.18, rings 3.16 / 3.29 / 4.40 (rings also cannot lend UDP GRO
// segments in place: the reader reuses its buffer before the writer
// runs); with fake device and socket (BenchmarkEgress*/BenchmarkIngress*,
// 2026-11-29): egress 23-25 Mpps direct vs 19-20 rings, ingress 22-23
// direct vs 17-18 rings. With
// two cores shared by both tunnelds, both iperf3 ends and the kernel, the
// hand-over (a wake-up per batch, another core's cache misses) costs more
// than the overlap it buys. The rings stay for fan-in/fan-out between
// device queues and sockets, and as an option to measure on machines with more
// cores.
//
// Buffers come from the pool at the reading stage and go back to it at the
// writing stage (or wherever a packet is dropped). Rings carry references,
// never bytes. Each stage counts into its own Counters.

import (
	"time"

	"tunnelplane/dataplane/stats"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/encap"
)

// Start launches the pipeline goroutines.
func (d *Dataplane) Start() {
	if t := d.cfg.WakeTick; t > 0 {
		d.wg.Add(1)
		go d.routineWarm(t)
	}
	for _, q := range d.queues {
		if a := q.answer; a != nil {
			a.r = d.newDeviceReader(q, a.view)
			a.r.answered = &q.answered
			d.answers = true
		}
	}
	if rc, ok := d.parts.Network.(routeChanger); ok {
		if changes, err := rc.RouteChanges(d.done); err != nil {
			d.log.Warn("route changes not followed: the peers keep the path MTU and device looked up when they were added", "err", err)
		} else {
			d.wg.Add(1)
			go d.routineFollowRoutes(changes)
		}
	}
	if d.hops != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.hops.run(d.done, d.table.Load, d.log)
		}()
	}
	for _, q := range d.queues {
		if !d.direct {
			d.wg.Add(2)
			go d.routineWriter("underlay-writer", q.underlayHandoff, d.newUnderlayWriter(q, &q.uwriter, 128))
			go d.routineWriter("device-writer", q.deviceHandoff, d.newDeviceWriter(q.dev, &q.dwriter, 128))
		}
		d.wg.Add(1)
		go d.routineDeviceReader(q)
		if q.recv != nil {
			d.wg.Add(1)
			go d.routineUnderlayReader(q)
		}
	}
}

// Err delivers errors that stop forwarding (the device vanished, the
// socket broke). The owner should log it and Close.
func (d *Dataplane) Err() <-chan error { return d.errc }

// Close stops the pipeline, closes the sockets and the device queues,
// and removes what opening them added to the system (Parts.Undo). It is
// safe to call more than once.
func (d *Dataplane) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.closeParts()
		d.wg.Wait()
		for _, q := range d.queues {
			if a := q.answer; a != nil && a.r != nil {
				a.r.close()
			}
		}
		if d.parts.Undo != nil {
			d.parts.Undo()
		}
	})
	return nil
}

func (d *Dataplane) now() int64 { return int64(time.Since(d.start)) }

func (d *Dataplane) routineDeviceReader(q *queueSet) {
	defer d.wg.Done()
	r := d.newDeviceReader(q, q.dev)
	defer r.close()
	for r.step() {
	}
}

func (d *Dataplane) routineUnderlayReader(q *queueSet) {
	defer d.wg.Done()
	// Each read takes a large buffer (a UDP GRO read returns up to 64
	// KiB); 32 of them hold up to about 1400 MTU-sized datagrams.
	bs := batchFor(32, d.bufs.large)
	type segment struct {
		id uint32
		n  int
	}
	segs := make([]segment, 0, maxGSOSegments*2)
	idx := make([]uint32, bs)
	msgs := make([]underlay.Message, bs)
	in := &ingressBatch{q: q, rx: make([]packet, 0, bs), tx: make([]packet, 0, bs), free: make([]uint32, 0, bs), split: newSplitScratch()}
	c := &q.ureader
	var dw *deviceWriter
	var rw *underlayWriter
	if d.direct {
		dw = d.newDeviceWriter(q.dev, &q.dwriter, 128)
		rw = d.newUnderlayWriter(q, &q.uwriter, 16) // neighbour replies
	}
	// Borrowing GRO segments in place needs the writes to finish before the
	// read buffer is reused, which run to completion guarantees, and a
	// device writer that does not write into the headroom.
	borrow := dw != nil && dw.headroomFree()
	// What the kernel answers while this goroutine writes to the device
	// leaves from here (devreader.go).
	answer := dw != nil && d.answers
	l2 := 0
	if d.tunnel.l2 {
		l2 = encap.EthernetLen
	}
	lent := make([]uint32, 0, bs) // read buffers lent to this batch's packets
	held := 0                     // idx[:held]: large buffers kept from the last batch
	for {
		if !d.bufs.refill(idx, held, true, d.done) {
			return
		}
		n := len(idx)
		for i := range n {
			msgs[i].Buf = d.bufs.buf(idx[i])[Headroom:]
		}
		k, err := q.recv.ReadBatch(msgs[:n])
		if err != nil {
			held = n
			if underlay.IsTransient(err) {
				continue // an ICMP error about an earlier datagram; the socket is fine
			}
			d.bufs.putBatch(idx[:n])
			d.fatal("underlay-reader", err)
			return
		}
		c.Batches.Add(1)
		in.start(d.table.Load(), d.now(), idx[k:n])
		var rxPackets, rxBytes, singles uint64
		for i := range k {
			m := &msgs[i]
			rxPackets++
			rxBytes += uint64(m.N)
			if m.GSOSize > 0 && m.N > m.GSOSize {
				c.Segments.Observe((m.N + m.GSOSize - 1) / m.GSOSize)
			} else {
				singles++ // observed once for the batch: two atomic adds a datagram were 17% of ingress
			}
			if m.Trunc {
				c.Drop(stats.Drop(encap.DropOversize))
				in.free = append(in.free, idx[i])
				continue
			}
			from := m.Addr.Addr()
			p := in.from.get(from)
			if p == nil {
				p = in.from.put(from, in.tbl.PeerByRemote(from))
			}
			if p == nil {
				c.Drop(stats.DropUnknownPeer)
				in.free = append(in.free, idx[i])
				continue
			}
			in.outerTOS = m.TOS // every datagram of a GRO train came with the same
			if seg := m.GSOSize; seg > 0 && m.N > seg && d.tunnel.superDatagram(d.bufs.buf(idx[i]), Headroom, m.N, seg) {
				// Not a GRO train: one datagram whose inner UDP segments
				// the kernel left joined (partial.go).
				d.ingress(in, idx[i], Headroom, m.N, false, p, seg)
				continue
			}
			if seg := m.GSOSize; seg > 0 && m.N > seg && borrow {
				// UDP GRO, written where it lies: each datagram becomes a
				// packet borrowing its bytes from the read buffer, which
				// goes back to the pool once the batch is written. Only a
				// datagram that may be answered in place (the answer can
				// outgrow it into its neighbour) moves to a buffer of its
				// own.
				b := d.bufs.buf(idx[i])
				lent = append(lent, idx[i])
				rxPackets--
				for o := Headroom; o < Headroom+m.N; o += seg {
					rxPackets++
					sn := min(seg, Headroom+m.N-o)
					if d.tunnel.mayReply(b, o, o+sn) {
						sid, ok := d.bufs.getSmall()
						if !ok {
							c.Drop(stats.DropPoolExhausted)
							continue
						}
						copy(d.bufs.buf(sid)[Headroom:], b[o:o+sn])
						d.ingress(in, sid, Headroom, sn, false, p, 0)
						continue
					}
					d.ingress(in, idx[i], o, sn, true, p, 0)
				}
				continue
			}
			if seg := m.GSOSize; seg > 0 && m.N > seg {
				// UDP GRO: the kernel handed over several datagrams back to
				// back. Each but the first moves to a buffer of its own, so
				// that every packet has headroom for the device write; all
				// are copied out before the first is touched (a neighbour
				// reply is built in place and may outgrow its request), and
				// handled in arrival order.
				b := d.bufs.buf(idx[i])
				segs = segs[:0]
				for o := seg; o < m.N; o += seg {
					rxPackets++
					sid, ok := d.bufs.getSmall()
					if !ok {
						c.Drop(stats.DropPoolExhausted)
						continue
					}
					sn := copy(d.bufs.buf(sid)[Headroom:], b[Headroom+o:Headroom+min(o+seg, m.N)])
					segs = append(segs, segment{sid, sn})
				}
				d.ingress(in, idx[i], Headroom, seg, false, p, 0)
				for _, s := range segs {
					d.ingress(in, s.id, Headroom, s.n, false, p, 0)
				}
				continue
			}
			d.ingress(in, idx[i], Headroom, m.N, false, p, 0)
		}
		c.RxPackets.Add(rxPackets)
		c.RxBytes.Add(rxBytes)
		c.Segments.ObserveN(1, singles)
		c.BatchSize.Observe(int(rxPackets))
		held = d.bufs.keep(idx, in.free, true)
		rx, tx := in.rx, in.tx
		if dw != nil {
			var queues uint64 // where the kernel will put its answers to rx
			if answer {
				queues = d.replyQueues(rx, l2)
			}
			stage, err := "device-writer", d.writeAll(dw, rx)
			if err == nil {
				stage, err = "underlay-writer", d.writeAll(rw, tx)
			}
			d.bufs.putBatch(lent)
			lent = lent[:0]
			if err != nil {
				d.fatal(stage, err)
				return
			}
			if queues != 0 && !d.answer(queues) {
				return
			}
			continue
		}
		if m := q.deviceHandoff.put(rx, d.done); m < len(rx) {
			d.dropNotHandedOn(rx[m:], c)
			d.dropNotHandedOn(tx, c)
			return
		}
		if m := q.underlayHandoff.put(tx, d.done); m < len(tx) {
			d.dropNotHandedOn(tx[m:], c)
			return
		}
	}
}

// ingress decapsulates one datagram of n bytes at off in buffer id from
// peer p and sorts it to the device (in.rx), back to the peer (in.tx), or
// the drop. A borrowed datagram's buffer is not this packet's to free.
// gso is the kernel's segment size for a UDP-tunnel GSO datagram, else 0.
func (d *Dataplane) ingress(in *ingressBatch, id uint32, off, n int, borrowed bool, p *Peer, gso int) {
	b := d.bufs.buf(id)
	off, end, v, drop := d.tunnel.decap(b, off, off+n, p, in)
	switch v {
	case toDevice:
		if end-off > d.tunnel.innerMax {
			d.superIngress(in, id, off, end, borrowed, p, gso)
			break
		}
		in.rx = append(in.rx, packet{idx: id, off: int32(off), end: int32(end), peer: p, borrowed: borrowed})
	case reply:
		// The reply sits where the request's Ethernet frame was; the VXLAN
		// header goes back in front of it.
		no := d.tunnel.encapReply(b, off)
		in.tx = append(in.tx, packet{idx: id, off: int32(no), end: int32(end), peer: p, borrowed: borrowed})
	default:
		in.q.ureader.Drop(drop)
		if !borrowed {
			in.free = append(in.free, id)
		}
	}
}

// routineWriter is a writer goroutine of pipeline: rings: it drains one
// handoff into one writer until the data plane stops.
func (d *Dataplane) routineWriter(stage string, from *handoff, w packetWriter) {
	defer d.wg.Done()
	ps := make([]packet, w.size())
	for {
		n := from.get(ps, d.done)
		if n == 0 {
			return
		}
		if err := w.write(ps[:n]); err != nil {
			d.fatal(stage, err)
			return
		}
	}
}
