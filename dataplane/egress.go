package dataplane

// What the device reader does with each packet it read: find the peer
// (by inner destination in TUN mode, by MAC in TAP mode, flooding what
// has none), encapsulate, and add it to the batch for the underlay writer
// (or drop it, counted). Shared by the plain read path (pipeline.go) and
// the super-packet one (superegress.go).

import (
	"tunnelplane/dataplane/stats"
	"tunnelplane/encap"
)

// egressPacket encapsulates the packet b[off:end] (in buffer id) read from
// the device and adds it to the batch, or drops it.
func (d *Dataplane) egressPacket(e *egressBatch, b []byte, id uint32, off, end int) {
	if d.tunnel.l2 {
		d.egressL2(e, b, off, end, id)
		return
	}
	p, drop := d.classifyL3(e, b, off, end)
	encOff := off
	if drop == 0 {
		encOff, drop = d.tunnel.encap(b, off, end, p)
	}
	if drop != 0 {
		e.q.egress.Drop(drop)
		e.free = append(e.free, id)
		return
	}
	d.emit(e, b, id, off, encOff, end, p)
}

// classifyL3 finds the peer for the inner IP packet b[off:end].
func (d *Dataplane) classifyL3(e *egressBatch, b []byte, off, end int) (*Peer, stats.Drop) {
	_, dst, ok := encap.InnerAddrs(b, off, end)
	if !ok {
		return nil, stats.DropNotIP
	}
	p := e.dst.get(dst)
	if p == nil {
		if p = e.dst.put(dst, e.tbl.Lookup(dst)); p == nil {
			return nil, stats.DropNoRoute
		}
	}
	return p, 0
}

// egressL2 sends the frame b[off:end] to the peer its destination MAC was
// learned from, or floods a broadcast, multicast or unknown destination to
// every peer (a copy each beyond the first).
func (d *Dataplane) egressL2(e *egressBatch, b []byte, off, end int, id uint32) {
	c, tbl := &e.q.egress, e.tbl
	if end-off < encap.EthernetLen {
		c.Drop(stats.Drop(encap.DropTruncated))
		e.free = append(e.free, id)
		return
	}
	var dst [6]byte
	copy(dst[:], b[off:])
	if dst[0]&1 == 0 {
		if p := tbl.LookupMAC(dst, e.now); p != nil {
			no, _ := d.tunnel.encap(b, off, end, p)
			d.emit(e, b, id, off, no, end, p)
			return
		}
	}
	if len(tbl.Peers) == 0 {
		c.Drop(stats.DropNoRoute)
		e.free = append(e.free, id)
		return
	}
	for _, p := range tbl.Peers[1:] {
		cid, ok := d.bufs.getSmall()
		if !ok {
			c.Drop(stats.DropPoolExhausted)
			continue
		}
		cb := d.bufs.buf(cid)
		n := copy(cb[Headroom:], b[off:end])
		no, _ := d.tunnel.encap(cb, Headroom, Headroom+n, p)
		d.emit(e, cb, cid, Headroom, no, Headroom+n, p)
	}
	p := tbl.Peers[0]
	no, _ := d.tunnel.encap(b, off, end, p)
	d.emit(e, b, id, off, no, end, p)
}

// emit adds the encapsulated packet b[encOff:end] (inner at innerOff) for
// p, or drops it when it is too big for the path (see pmtu.go).
func (d *Dataplane) emit(e *egressBatch, b []byte, id uint32, innerOff, encOff, end int, p *Peer) {
	send, big, icmps := d.checkSize(b, innerOff, encOff, end, p, e.icmps)
	e.icmps = icmps
	if !send {
		e.q.egress.Drop(stats.DropTooBig)
		e.free = append(e.free, id)
		return
	}
	// Extend in place and fill the fields: measured 20% faster on the hot
	// path than appending a composite literal.
	out := e.out
	n := len(out)
	if n < cap(out) {
		out = out[:n+1]
	} else {
		out = append(out, packet{}) // TAP flooding: more packets than buffers read
	}
	e.out = out
	pk := &out[n]
	pk.idx, pk.off, pk.end, pk.peer, pk.big, pk.tos, pk.gso = id, int32(encOff), int32(end), p, big, 0, 0
	if d.tosInherit {
		pk.tos = d.outerTOS(b, innerOff, end)
	}
}
