package dataplane

// What a kernel peer sends over a path it trusts: partial checksums and
// super-packets.
//
// When the sender's kernel offloads the inner TCP/UDP checksum (every
// veth, virtio and tunnel device does by default), the packet leaves the
// sender CHECKSUM_PARTIAL: the checksum field holds only the folded
// pseudo-header sum, and whoever finally puts it on a wire fills in the
// rest. Across a veth, or a virtio NIC that passes offloads through,
// nobody does: the receiving kernel keeps the "partial" mark on the skb
// and trusts it, but a socket reader sees only the bytes. The same holds
// for segmentation: the sender's GSO super-packet (up to 64 KiB, one
// inner TCP or UDP header) crosses uncut, and arrives as one datagram
// larger than the underlay MTU, with no UDP_GRO control message.
//
// Written to the TUN as plain packets, the receiving TCP drops both:
// the first with a checksum error (TcpInCsumErrors), the second too. The
// kernel's own vxlan device instead hands them on as it got them, and so
// does tunneld:
//   - a partial checksum goes to the device with the virtio header's
//     NEEDS_CSUM (csum_start/csum_offset), or is completed in software
//     where the device has no virtio header;
//   - a TCP super-packet goes to the device as one GSO packet (gso_size:
//     what the device MTU carries after the headers), or is split in
//     software where the device takes no GSO;
//   - a UDP super-packet is one only where the kernel says where its
//     datagrams end (superIngress); then the same, with that size;
//     without it, a big UDP datagram goes whole, as the kernel passes it;
//   - any other packet larger than the device MTU is dropped as
//     inner_oversize: nothing can have cut it from a segmentation offload.
//
// Why the partial test is safe. A packet counts as partial only when its
// checksum field equals, bit for bit, the folded pseudo-header sum over
// its own addresses and length; the device then computes the checksum
// over the bytes as they are. Corruption on the way is accepted only when
// it leaves that one value in the field: for damage that changes the
// field, 1 in 65536, the odds at which damage yields a valid checksum;
// for damage that spares the field, only when the sender's correct
// checksum happened to equal the pseudo-header sum, again 1 in 65536 of
// packets. So a damaged packet passes at most twice as often as the
// checksum alone would let it (2^-15 against 2^-16), and only damage that
// the underlay's own checks (Ethernet FCS, the outer UDP checksum the
// kernel vxlan sends) missed first. Any other mismatch is left for the
// receiving stack to drop and count. Accepting every bad checksum as
// partial would pass every corrupted packet; testing nothing would drop
// every packet of a kernel peer on a local path.
//
// The kernel's own receive path does the same for the CHECKSUM_PARTIAL
// packets it gets from a veth, without even this test.

import (
	"encoding/binary"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/stats"
	"tunnelplane/encap"
)

// innerIP returns the IP packet in the inner packet b[off:end]: all of it
// in TUN mode, the payload of an IPv4/IPv6 Ethernet frame in TAP mode
// (ok false for any other frame).
func (t *tunnel) innerIP(b []byte, off, end int) (ip []byte, l2 int, ok bool) {
	if !t.l2 {
		return b[off:end], 0, true
	}
	if end-off < encap.EthernetLen {
		return nil, 0, false
	}
	switch binary.BigEndian.Uint16(b[off+12:]) {
	case encap.EtherTypeIPv4, encap.EtherTypeIPv6:
		return b[off+encap.EthernetLen : end], encap.EthernetLen, true
	}
	return nil, 0, false
}

// superIngress takes an inner packet b[off:end] (in buffer id) longer
// than the device MTU. gso is the segment size the kernel reported for the
// datagram (UDP_GRO: a UDP-tunnel GSO packet whose inner segments are UDP),
// or 0.
//
//   - TCP is a super-packet whatever its source: cutting a stream anywhere
//     is what TSO does. It goes to the device as one GSO packet where the
//     device takes it (segments of gso, at most what the MTU carries), or
//     is split here.
//   - UDP is one only with gso: datagram boundaries belong to the
//     application, and only the sender's gso_size says where they are.
//     Without it (a reassembled datagram from a peer with a larger MTU,
//     or a raw socket's packet) it is one datagram, and goes to the device
//     whole, as the kernel's own vxlan passes it.
//   - Anything else is dropped as inner_oversize.
func (d *Dataplane) superIngress(in *ingressBatch, id uint32, off, end int, borrowed bool, p *Peer, gso int) {
	c, sc := &in.q.ureader, &in.split
	drop := func(r stats.Drop) {
		c.Drop(r)
		if !borrowed {
			in.free = append(in.free, id)
		}
	}
	b := d.bufs.buf(id)
	ip, l2, ok := d.tunnel.innerIP(b, off, end)
	if !ok {
		drop(stats.DropInnerOversize)
		return
	}
	s, v := device.ParseSuper(ip, l2, d.cfg.Device.MTU, gso)
	switch v {
	case device.SuperNotSegmented:
		drop(stats.DropInnerOversize)
		return
	case device.SuperDatagram:
		// One big datagram; the writer completes a partial checksum.
		in.rx = append(in.rx, packet{idx: id, off: int32(off), end: int32(end), peer: p, borrowed: borrowed})
		return
	}
	c.Supers.ObserveIn(&stats.SuperBuckets, end-off, 1)
	switch v {
	case device.SuperBadChecksum:
		drop(stats.DropInnerChecksum)
		return
	case device.SuperBadSize:
		drop(stats.DropInnerOversize)
		return
	}
	if d.devGSO && (!s.UDP() || d.devUSO) {
		// The device writer (device.GatherWriter) gives it a GSO header.
		in.rx = append(in.rx, packet{idx: id, off: int32(off), end: int32(end), peer: p, borrowed: borrowed, gso: uint16(s.Size())})
		return
	}
	n := s.Segments()
	if n > len(sc.bufs) {
		drop(stats.DropTooBig)
		return
	}
	ids := sc.ids[:0]
	for range n {
		sid, ok := d.bufs.getSmall()
		if !ok {
			d.bufs.putBatch(ids)
			drop(stats.DropPoolExhausted)
			return
		}
		ids = append(ids, sid)
	}
	for i, sid := range ids {
		sc.bufs[i] = d.bufs.buf(sid)
	}
	k, err := s.Split(b[off:end], sc.bufs[:n], sc.sizes[:n], Headroom)
	if err != nil {
		d.bufs.putBatch(ids)
		drop(stats.DropTooBig) // segments larger than a buffer: a gso_size over the MTU
		return
	}
	for i := range k {
		in.rx = append(in.rx, packet{idx: ids[i], off: Headroom, end: int32(Headroom + sc.sizes[i]), peer: p})
	}
	d.bufs.putBatch(ids[k:])
	if !borrowed {
		in.free = append(in.free, id)
	}
}

// superDatagram reports whether the UDP_GRO read of n bytes at b[off:]
// with segment size seg is one UDP-tunnel GSO datagram rather than a train
// of seg-sized datagrams: its inner IP packet spans the whole read. The
// kernel reports the inner segment size for such a datagram when the
// inner segments are UDP (SKB_GSO_UDP_L4 under the tunnel bit); a train's
// first datagram ends at seg.
func (t *tunnel) superDatagram(b []byte, off, n, seg int) bool {
	ip := off
	switch t.kind {
	case config.EncapVXLAN:
		ip += encap.VXLANLen + encap.EthernetLen
		if n < ip-off+40 {
			return false
		}
		if et := binary.BigEndian.Uint16(b[ip-2:]); et != encap.EtherTypeIPv4 && et != encap.EtherTypeIPv6 {
			return false
		}
	case config.EncapIPUDP:
		if n < 40 {
			return false
		}
	default:
		return false
	}
	var total int
	switch b[ip] >> 4 {
	case 4:
		total = int(binary.BigEndian.Uint16(b[ip+2:]))
	case 6:
		total = 40 + int(binary.BigEndian.Uint16(b[ip+4:]))
	default:
		return false
	}
	return total > seg && ip-off+total == n
}
