package dataplane

import (
	"tunnelplane/encap"
)

// Path MTU, as the Linux tunnel drivers handle it: an encapsulated packet
// larger than the path to its peer allows is
//   - answered with ICMP "fragmentation needed" (IPv4 with DF) or "packet
//     too big" (IPv6), advertising the inner MTU that does fit, written
//     back into the device towards the inner source, and dropped;
//   - otherwise (IPv4 without DF) sent, and the kernel fragments the outer
//     packet (the sockets leave IP_MTU_DISCOVER at "want" unless df: is set).
//
// The path MTU to a peer is the smallest of the configured underlay MTU,
// the MTU of the interface the route to the peer leaves by, and the
// route's own MTU metric; it is looked up when a peer joins the table (a
// peer that stays keeps its figure: with thousands of peers a lookup per
// peer and change was most of the cost of a reload; netcfg.PathMTUs).

// kernelHeaderLen is what the kernel adds in front of what we hand the
// socket: the outer IP header, and the UDP header for UDP tunnels.
func (d *Dataplane) kernelHeaderLen() int { return d.tunnel.outerLen }

// checkSize decides about the encapsulated packet b[encOff:end] for peer p
// whose inner packet (IP, or an Ethernet frame in TAP mode) starts at
// innerOff: send (big reports that it exceeds the path and will be
// fragmented by the kernel, so it must not join a GSO train), or not,
// in which case an ICMP error may have been queued to the device in icmps.
func (d *Dataplane) checkSize(b []byte, innerOff, encOff, end int, p *Peer, icmps []packet) (send, big bool, _ []packet) {
	if end-encOff+d.kernelHeaderLen() <= p.pathMTU || p.pathMTU == 0 {
		return true, false, icmps
	}
	ipOff := innerOff
	var eth [14]byte
	if d.tunnel.l2 {
		copy(eth[:], b[innerOff:])
		et := uint16(eth[12])<<8 | uint16(eth[13])
		if et != encap.EtherTypeIPv4 && et != encap.EtherTypeIPv6 {
			return true, true, icmps
		}
		ipOff += encap.EthernetLen
	}
	if !encap.MustNotFragment(b, ipOff, end) {
		return true, true, icmps
	}
	// The inner MTU that fits: the path less everything in front of the
	// inner IP packet.
	mtu := p.pathMTU - d.kernelHeaderLen() - (ipOff - encOff)
	// The error comes from the inner destination, as if from the first hop
	// beyond the tunnel: the sender's kernel drops an ICMP error that
	// claims one of its own addresses as source (a martian on tp0), and the
	// destination routes back through the tunnel, so reverse-path checks
	// pass.
	_, src, ok := encap.InnerAddrs(b, ipOff, end)
	if !ok {
		return false, false, icmps
	}
	id, ok := d.bufs.getSmall()
	if !ok {
		return false, false, icmps
	}
	nb := d.bufs.buf(id)
	start := Headroom
	if d.tunnel.l2 {
		start += encap.EthernetLen
	}
	n := encap.PutTooBig(nb[start:], b[ipOff:end], src, mtu)
	if n == 0 {
		d.bufs.put(id)
		return false, false, icmps
	}
	if d.tunnel.l2 {
		// Back to the sender of the frame, from the MAC it was sent to.
		var dst, srcMAC [6]byte
		copy(dst[:], eth[6:12])
		copy(srcMAC[:], eth[0:6])
		et := uint16(eth[12])<<8 | uint16(eth[13])
		encap.PushEthernet(nb, start, dst, srcMAC, et)
		start -= encap.EthernetLen
		n += encap.EthernetLen
	}
	return false, false, append(icmps, packet{idx: id, off: int32(start), end: int32(start + n)})
}

// outerTOS is the outer TOS (traffic class) for tos: inherit, as the Linux
// tunnel drivers compute it (RFC 6040 normal mode): the inner DSCP, and the
// inner ECN field unless the inner packet is already marked CE, in which
// case ECT(0). The inner packet (IP, or an Ethernet frame in TAP mode)
// starts at off; anything that is not IP gives 0.
func (d *Dataplane) outerTOS(b []byte, off, end int) uint8 {
	if d.tunnel.l2 {
		if end-off < encap.EthernetLen+1 {
			return 0
		}
		et := uint16(b[off+12])<<8 | uint16(b[off+13])
		if et != encap.EtherTypeIPv4 && et != encap.EtherTypeIPv6 {
			return 0
		}
		off += encap.EthernetLen
	}
	if end-off < 2 {
		return 0
	}
	var inner uint8
	switch b[off] >> 4 {
	case 4:
		inner = b[off+1]
	case 6:
		inner = b[off]<<4 | b[off+1]>>4
	default:
		return 0
	}
	if inner&3 == 3 { // CE
		return inner&^3 | 2
	}
	return inner
}
