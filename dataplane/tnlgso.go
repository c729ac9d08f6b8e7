package dataplane

// Sending VXLAN and IP-in-UDP super-packets whole (underlay.tunnel_gso;
// the TAP, its header and what it bypasses are in
// dataplane/underlay/tnltap.go).
//
// With the TAP on, the device reader reads each packet as the kernel
// wrote it (device.SuperReader): a TCP super-packet stays whole in a large
// buffer, gets its tunnel headers as any packet does (VXLAN and inner
// Ethernet; none for IP-in-UDP), then the outer UDP, IPv4 and Ethernet
// headers and the 24-byte tunnel virtio header, and goes to the TAP in one write; the kernel segments it
// on the way out. Everything else (plain packets, UDP super-packets,
// super-packets for a peer whose next hop is not resolved yet or whose
// path MTU their segments exceed) is split as without the TAP and sent by
// the sockets, so the TAP is only ever a shortcut.
//
// The outer destination MAC is the next hop's (nexthop.go).

import (
	"errors"
	"sync/atomic"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/netcfg"
	"tunnelplane/dataplane/stats"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/encap"
)

// TunnelTAP is the UDP-tunnel GSO TAP of a data plane (Parts.TunnelTAP).
type TunnelTAP struct {
	TAP  *underlay.TunnelTAP // its queues serve Parts.Devices, one each
	Link netcfg.UnderlayLink // where its frames leave (netcfg.RedirectTAP)
}

// tunnelGSO is the data plane's state for the TAP.
type tunnelGSO struct {
	tap   *underlay.TunnelTAP
	hops  *nextHops
	frame underlay.TunnelFrame // the fields every frame shares
	// ports[q] is the outer source port of queue q's frames: its send
	// socket's, so that a flow's packets keep one outer 4-tuple whichever
	// way they leave (the peer's SO_REUSEPORT group picks the reader by
	// it, and two would reorder the flow).
	ports []uint16
	off   atomic.Bool // the kernel refused the TAP's frames: sockets only
}

func newTunnelGSO(cfg *config.Config, t *TunnelTAP, hops *nextHops, queues []*queueSet) *tunnelGSO {
	g := &tunnelGSO{tap: t.TAP, hops: hops}
	for _, q := range queues {
		port := cfg.Encap.Port
		if s, ok := q.send.(interface{ LocalPort() uint16 }); ok && s.LocalPort() != 0 {
			port = s.LocalPort()
		}
		g.ports = append(g.ports, port)
	}
	g.frame = underlay.TunnelFrame{
		SrcMAC: t.Link.MAC, Src: cfg.Underlay.Local,
		DstPort: cfg.Encap.Port,
		TTL:     cfg.Encap.TTL,
		// As the sockets: DF unless cleared (IP_PMTUDISC_WANT sets it).
		DF: cfg.Encap.DF != 0,
	}
	if cfg.Encap.TOS >= 0 {
		g.frame.TOS = uint8(cfg.Encap.TOS)
	}
	return g
}

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

// wants reports whether the packet the device handed over with h goes
// the TAP's way (a TCP super-packet with its checksum left to the
// device), as far as its header says.
func (g *tunnelGSO) wants(h *device.VirtioHdr) bool {
	if g.off.Load() || h.Flags&device.VirtioNeedsCsum == 0 || h.GSOSize == 0 {
		return false
	}
	switch h.GSOType &^ device.VirtioGSOECN {
	case device.VirtioGSOTCPv4, device.VirtioGSOTCPv6:
		return true
	}
	return false
}

// readSupers is the device read of a queue with the TAP: like Read with
// the reader's drain loop, but a TCP super-packet stays whole in st's
// large buffer and ends the batch (st.pending). It returns the plain
// packets read into bufs.
func (d *Dataplane) readSupers(q *queueSet, st *superState, bufs [][]byte, sizes []int, probe *device.ReadProbe, room int) (int, error) {
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
			m, err = q.dev.Read(bufs[k:], sizes[k:], Headroom)
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

// writeFrame writes one TAP frame. The kernel's refusal of frames, or a
// TAP gone underneath, turns the TAP off (the sockets take over) rather
// than stopping forwarding.
func (u *underlayWriter) writeFrame(p *packet) {
	d, g := u.d, u.d.tgso
	b := d.bufs.buf(p.idx)
	err := g.tap.Write(u.tapQueue, b[p.off:p.end])
	if err == nil {
		u.c.Supers.ObserveIn(&stats.SuperBuckets, int(p.end-p.off)-underlay.TunnelFrameOverhead, 1)
		return
	}
	u.c.Drop(stats.DropTunnelGSOWrite)
	if !underlay.IsTransient(err) || isClosed(err) {
		if g.off.CompareAndSwap(false, true) {
			select {
			case <-d.done:
			default:
				d.log.Warn("UDP-tunnel GSO TAP refused a frame; sending super-packets through the sockets from now on", "tap", g.tap.Name(), "err", err)
			}
		}
	}
}
