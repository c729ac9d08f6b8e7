package neigh

import "encoding/binary"

// IPv6 header (RFC 8200), 40 bytes, followed here directly by ICMPv6:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Source Address (16)                          |
//	|                  Destination Address (16)                     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Neighbour Solicitation / Advertisement (RFC 4861 §4.3, §4.4):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Type 135/136 |     Code 0    |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|S|O|        Reserved (NS: all 32 bits reserved)              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Target Address (16)                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Options: Type (1 SLLA, 2 TLLA) | Length (units of 8 bytes) | ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv6HdrLen    = 40
	ipProtoICMPv6 = 58
	ndpHopLimit   = 255

	icmpTypeNS = 135
	icmpTypeNA = 136
	nsLen      = 24 // ICMPv6 NS without options
	naLen      = 32 // ICMPv6 NA with one TLLA option

	ndpOptSLLA = 1
	ndpOptTLLA = 2

	naFlagSolicited = 0x40
	naFlagOverride  = 0x20

	offIPv6 = ethHdrLen              // IPv6 header in the frame
	offICMP = ethHdrLen + ipv6HdrLen // ICMPv6 message in the frame
)

// allNodes is ff02::1 and allNodesMAC its Ethernet mapping (RFC 2464 §7).
var (
	allNodes    = [16]byte{0: 0xff, 1: 0x02, 15: 0x01}
	allNodesMAC = MAC{0x33, 0x33, 0, 0, 0, 1}
)

// handleNDP handles the IPv6 frame buf[:flen]; buf extends to the end of the
// caller's buffer (room for the advertisement). flen >= ethHdrLen.
func (r *Responder) handleNDP(buf []byte, flen int) (Result, int) {
	if flen < offICMP {
		return Malformed, 0
	}
	ip := buf[offIPv6:offICMP]
	if ip[0]>>4 != 6 {
		return Malformed, 0
	}
	if ip[6] != ipProtoICMPv6 {
		return NotNeigh, 0
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen > flen-offICMP || plen < 4 {
		// Bytes after the payload are Ethernet padding and are ignored.
		return Malformed, 0
	}
	msg := buf[offICMP : offICMP+plen]
	switch msg[0] {
	case icmpTypeNS, icmpTypeNA:
	default:
		return NotNeigh, 0
	}
	src := [16]byte(ip[8:24])
	if ip[7] != ndpHopLimit || msg[1] != 0 || plen < nsLen ||
		!checksumOK(src[:], ip[24:40], msg) {
		return Malformed, 0
	}
	if msg[0] == icmpTypeNA {
		return NotForUs, 0
	}

	target := [16]byte(msg[8:24])
	if target[0] == 0xff || src[0] == 0xff {
		// Neither the target nor the source may be multicast.
		return Malformed, 0
	}
	var sll MAC
	haveSLL := false
	for o := msg[nsLen:]; len(o) > 0; {
		if len(o) < 2 {
			return Malformed, 0
		}
		l := int(o[1]) * 8
		if l == 0 || l > len(o) {
			return Malformed, 0
		}
		if o[0] == ndpOptSLLA && l >= 8 {
			sll = MAC(o[2:8])
			haveSLL = true
		}
		o = o[l:]
	}
	dad := src == [16]byte{}
	var ethDst MAC
	switch {
	case dad:
		if haveSLL || !isSolicitedNode(ip[24:40]) {
			return Malformed, 0
		}
		ethDst = allNodesMAC
	case haveSLL:
		ethDst = sll
	default:
		ethDst = MAC(buf[6:12])
	}
	if !dad && isGroup(ethDst[:]) {
		return Malformed, 0
	}
	if !r.acceptsEthDst(buf[0:6]) || !r.owns16(target) {
		return NotForUs, 0
	}
	if len(buf) < NAReplyLen {
		return Malformed, 0
	}

	peer := src
	flags := byte(naFlagSolicited | naFlagOverride)
	if dad {
		peer = allNodes
		flags = naFlagOverride
	}
	copy(buf[0:6], ethDst[:])
	copy(buf[6:12], r.mac[:])
	binary.BigEndian.PutUint16(buf[12:14], etherTypeIPv6)
	ip = buf[offIPv6:offICMP]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28) // version 6, class 0, flow 0
	binary.BigEndian.PutUint16(ip[4:6], naLen)
	ip[6] = ipProtoICMPv6
	ip[7] = ndpHopLimit
	copy(ip[8:24], target[:])
	copy(ip[24:40], peer[:])
	msg = buf[offICMP:NAReplyLen]
	msg[0] = icmpTypeNA
	msg[1] = 0
	msg[2], msg[3] = 0, 0
	msg[4] = flags
	msg[5], msg[6], msg[7] = 0, 0, 0
	copy(msg[8:24], target[:])
	msg[24] = ndpOptTLLA
	msg[25] = 1
	copy(msg[26:32], r.mac[:])
	binary.BigEndian.PutUint16(msg[2:4], icmpv6Checksum(target[:], peer[:], msg))
	return Replied, NAReplyLen
}

// isSolicitedNode reports whether a (16 bytes) is in ff02::1:ff00:0/104.
func isSolicitedNode(a []byte) bool {
	return a[0] == 0xff && a[1] == 0x02 &&
		a[2]|a[3]|a[4]|a[5]|a[6]|a[7]|a[8]|a[9]|a[10] == 0 &&
		a[11] == 0x01 && a[12] == 0xff
}
