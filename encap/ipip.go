// IP in IP (RFC 2003, IP protocol 4) and IPv6 in IPv4 (6in4/SIT, RFC 4213
// section 3.5, IP protocol 41): the inner packet directly follows the outer
// IPv4 header, with nothing in between.
//
//	+---------------------------+
//	|      Outer IPv4 Header    |  Protocol = 4 (IPIP) or 41 (SIT)
//	+---------------------------+
//	|      Inner IP Header      |  IPv4 for IPIP, IPv6 for SIT
//	+---------------------------+
//	|                           |
//	|      Inner IP Payload     |
//	|                           |
//	+---------------------------+
//
// Encapsulation is PushIPv4 with Protocol ProtoIPIP or ProtoIPv6.

package encap

import "encoding/binary"

// CheckInner validates that b[off:end] is an IP packet of the given version
// (4 or 6) and returns off plus the packet's own length, trimming any
// padding after it. Too few bytes for the minimum header is DropTruncated.
// Everything else wrong with the inner packet is DropBadInner: a version
// nibble other than version (the tunnel type fixes the inner version), a
// version argument other than 4 or 6, an IPv4 IHL < 5 or beyond the total
// length, or a total/payload length beyond end-off.
//
// The inner header checksum is not verified: the receiving stack does that,
// and the outer checksum or the link already protected the bytes.
// Any b, off and end are safe.
func CheckInner(b []byte, off, end int, version int) (innerEnd int, r DropReason) {
	if !hasBytes(b, off, end, 1) {
		return 0, DropTruncated
	}
	p := b[off:end]
	if int(p[0]>>4) != version {
		return 0, DropBadInner
	}
	switch version {
	case 4:
		if len(p) < IPv4Len {
			return 0, DropTruncated
		}
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:]))
		if ihl < IPv4Len || total < ihl || total > len(p) {
			return 0, DropBadInner
		}
		return off + total, OK
	case 6:
		if len(p) < IPv6Len {
			return 0, DropTruncated
		}
		total := IPv6Len + int(binary.BigEndian.Uint16(p[4:]))
		if total > len(p) {
			return 0, DropBadInner
		}
		return off + total, OK
	}
	return 0, DropBadInner
}

// DecapIPIP decapsulates an IPv4-in-IPv4 packet. b[off:end] is the whole
// outer IPv4 packet, as a raw IPv4 socket delivers it. The outer header is
// validated by ParseIPv4 and must carry protocol 4 (DropBadProtocol); the
// inner packet is validated by CheckInner(…, 4). outer is filled as by
// ParseIPv4, so the caller can check the outer source against its peers.
func DecapIPIP(b []byte, off, end int, outer *IPv4Header) (innerOff, innerEnd int, r DropReason) {
	return decapIPv4Tunnel(b, off, end, outer, ProtoIPIP, 4)
}

// DecapSIT decapsulates an IPv6-in-IPv4 (6in4/SIT) packet: as DecapIPIP
// with protocol 41 and an inner IPv6 packet.
func DecapSIT(b []byte, off, end int, outer *IPv4Header) (innerOff, innerEnd int, r DropReason) {
	return decapIPv4Tunnel(b, off, end, outer, ProtoIPv6, 6)
}

func decapIPv4Tunnel(b []byte, off, end int, outer *IPv4Header, proto uint8, version int) (innerOff, innerEnd int, r DropReason) {
	innerOff, payEnd, r := ParseIPv4(b, off, end, outer)
	if r != OK {
		return 0, 0, r
	}
	if outer.Protocol != proto {
		return 0, 0, DropBadProtocol
	}
	innerEnd, r = CheckInner(b, innerOff, payEnd, version)
	if r != OK {
		return 0, 0, r
	}
	return innerOff, innerEnd, OK
}
