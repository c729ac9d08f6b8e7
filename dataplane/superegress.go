package dataplane

// The device reader's side of the UDP-tunnel GSO TAP (tnlgso.go): reading
// TCP super-packets whole, and making each one TAP frame or, where it
// cannot go that way, splitting it as without the TAP.

import (
	"errors"

	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/stats"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/encap"
)

// superState is a device reader's: its large buffer and the super-packet
// in it, read last in a batch and handled after the batch's plain packets
// (so that a flow's packets leave in the order they came).
type superState struct {
	r       device.SuperReader
	id      uint32 // the large buffer, or noBuffer
	pending bool
	n       int
	h       device.VirtioHdr
	ipid    uint16
	// Scratch for a super-packet split here (the fallback).
	ids   []uint32
	bufs  [][]byte
	sizes []int
}

const noBuffer = ^uint32(0)

func newSuperState(r device.SuperReader, room int) *superState {
	return &superState{r: r, id: noBuffer, ids: make([]uint32, 0, room), bufs: make([][]byte, room), sizes: make([]int, room)}
}

// readSupers is the device read of a queue with the TAP: like Read with
// the reader's drain loop, but a TCP super-packet stays whole in st's
// large buffer and ends the batch (st.pending). It returns the plain
// packets read into bufs.
func (d *Dataplane) readSupers(q *queueSet, dev device.Device, st *superState, bufs [][]byte, sizes []int, probe *device.ReadProbe, room int) (int, error) {
	l2 := 0
	if d.tunnel.l2 {
		l2 = encap.EthernetLen
	}
	k := 0
	for {
		var m int
		var err error
		if st.id == noBuffer {
			if id, ok := d.bufs.large.Get(); ok {
				st.id = id | largeBit
			}
		}
		if st.id == noBuffer {
			// No large buffer free (the underlay reader holds them): read
			// as without the TAP.
			m, err = dev.Read(bufs[k:], sizes[k:], Headroom)
		} else {
			lb := d.bufs.buf(st.id)
			var n int
			n, st.h, err = st.r.ReadSuper(lb, Headroom)
			if err == nil {
				if d.tgso.wants(&st.h) {
					st.pending, st.n = true, n
					return k, nil
				}
				m, err = device.SplitSuper(lb[Headroom:Headroom+n], st.h, l2, bufs[k:], sizes[k:], Headroom)
			}
		}
		if err != nil {
			if k == 0 {
				return 0, err
			}
			if errors.Is(err, device.ErrBadSuper) || device.IsTooManySegments(err) {
				q.egress.Drop(stats.Drop(encap.DropBadInner))
			}
			return k, nil // a failing read repeats and reports itself next time
		}
		k += m
		if probe == nil || len(bufs)-k < room || !probe.Readable() {
			return k, nil
		}
	}
}

// egressSuper sends the super-packet pending in st: through the TAP when
// its peer's next hop is known and its segments fit the path, else split
// here and on as plain packets.
func (d *Dataplane) egressSuper(e *egressBatch, st *superState) {
	st.pending = false
	c := &e.q.egress
	b := d.bufs.buf(st.id)
	off, end := Headroom, Headroom+st.n
	// Counted as the device reader counts: one packet for a whole
	// super-packet, the segments for a split one.
	if d.tapSuper(e, st, b, off, end) {
		c.RxPackets.Add(1)
		c.RxBytes.Add(uint64(st.n))
		st.id = noBuffer // the packet owns it now
		return
	}
	l2 := 0
	if d.tunnel.l2 {
		l2 = encap.EthernetLen
	}
	segs := (st.n + int(st.h.GSOSize) - 1) / int(st.h.GSOSize)
	if segs > len(st.bufs) {
		c.Drop(stats.DropTooBig)
		return
	}
	ids := st.ids[:0]
	for range segs + 1 { // SplitSuper may cut one more: the header's hdr_len is not trusted
		id, ok := d.bufs.getSmall()
		if !ok {
			break
		}
		ids = append(ids, id)
	}
	n := min(len(ids), len(st.bufs))
	for i := range n {
		st.bufs[i] = d.bufs.buf(ids[i])
	}
	k, err := device.SplitSuper(b[off:end], st.h, l2, st.bufs[:n], st.sizes[:n], Headroom)
	if err != nil {
		d.bufs.putBatch(ids)
		if device.IsTooManySegments(err) && n < segs {
			c.Drop(stats.DropPoolExhausted)
		} else {
			c.Drop(stats.Drop(encap.DropBadInner))
		}
		return
	}
	d.bufs.putBatch(ids[k:])
	var bytes uint64
	for i := range k {
		bytes += uint64(st.sizes[i])
		d.egressPacket(e, st.bufs[i], ids[i], Headroom, Headroom+st.sizes[i])
	}
	c.RxPackets.Add(uint64(k))
	c.RxBytes.Add(bytes)
}

// tapSuper makes the super-packet b[off:end] one TAP frame and adds it to
// the batch, or reports false (nothing changed but counters) when it
// cannot go that way.
func (d *Dataplane) tapSuper(e *egressBatch, st *superState, b []byte, off, end int) bool {
	g, t := d.tgso, d.tunnel
	ip := off
	if t.l2 {
		if end-off < encap.EthernetLen+40 || uint16(b[off+12])<<8|uint16(b[off+13]) != encap.EtherTypeIPv4 && uint16(b[off+12])<<8|uint16(b[off+13]) != encap.EtherTypeIPv6 {
			return false
		}
		ip += encap.EthernetLen
	}
	h := &st.h
	l4 := off + h.CsumStart
	if h.CsumOffset != 16 || l4 < ip+20 || l4+20 > end {
		return false
	}
	switch b[ip] >> 4 {
	case 4:
		if h.GSOType&^device.VirtioGSOECN != device.VirtioGSOTCPv4 || l4 != ip+int(b[ip]&0xf)*4 {
			return false
		}
	case 6:
		if h.GSOType&^device.VirtioGSOECN != device.VirtioGSOTCPv6 || l4 < ip+40 {
			return false
		}
	default:
		return false
	}
	payload := l4 + int(b[l4+12]>>4)*4
	if payload < l4+20 || payload > end {
		return false
	}
	var p *Peer
	if t.l2 {
		var dst [6]byte
		copy(dst[:], b[off:])
		if dst[0]&1 != 0 {
			return false // flooded: the copies go the plain way
		}
		if p = e.tbl.LookupMAC(dst, e.now); p == nil {
			return false
		}
	} else {
		var drop stats.Drop
		if p, drop = d.classifyL3(e, b, off, end); drop != 0 {
			return false // dropped and counted on the plain way
		}
	}
	if !p.Remote.Is4() {
		return false
	}
	mac, ok := g.hops.lookup(p.Remote)
	if !ok {
		return false
	}
	// Each segment on the wire: outer IPv4 and UDP, then everything from
	// the VXLAN header through the inner TCP header, then one segment.
	seg := t.outerLen + t.overhead + (payload - off) + int(h.GSOSize)
	if p.pathMTU != 0 && seg > p.pathMTU {
		return false // the plain way answers it (pmtu.go)
	}
	if end-off+t.overhead > underlay.MaxTunnelPayload {
		return false
	}
	encOff, drop := t.encap(b, off, end, p)
	if drop != 0 {
		return false
	}
	f := g.frame
	f.DstMAC, f.Dst, f.ID, f.SrcPort = mac, p.Remote, st.ipid, g.ports[e.q.id]
	if d.tosInherit {
		f.TOS = d.outerTOS(b, off, end)
	}
	segs := (end - payload + int(h.GSOSize) - 1) / int(h.GSOSize)
	st.ipid += uint16(segs)
	// PutTunnelFrame's offsets count in the buffer; the inner headers
	// have not moved (encap wrote in front of off).
	start := underlay.PutTunnelFrame(b, encOff, end, &f, &underlay.TunnelGSO{
		InnerIP: ip, InnerL4: l4, InnerPayload: payload, GSOType: h.GSOType, GSOSize: uint16(h.GSOSize)})
	out := e.out
	n := len(out)
	if n < cap(out) {
		out = out[:n+1]
	} else {
		out = append(out, packet{})
	}
	e.out = out
	pk := &out[n]
	pk.idx, pk.off, pk.end, pk.peer, pk.big, pk.tos, pk.borrowed = st.id, int32(start), int32(end), p, false, f.TOS, false
	pk.gso = uint16(h.GSOSize)
	return true
}
