package encap

import "encoding/binary"

// ECN codepoints, the low two bits of the IPv4 TOS / IPv6 traffic class.
const (
	ECNNotECT = 0
	ECNECT1   = 1
	ECNECT0   = 2
	ECNCE     = 3
)

// ECNDecap applies the decapsulation rule of RFC 6040 to the inner IP
// packet b[off:end] of a tunnel packet whose outer TOS (traffic class)
// was outerTOS, in place, as the kernel's tunnels do: an outer CE mark
// is copied into an ECN-capable inner packet (the IPv4 header checksum
// updated incrementally, RFC 1624), and a CE-marked outer packet whose
// inner packet is not ECN-capable is refused (ok false: the congestion
// signal cannot be passed on, and the RFC says drop). Every other
// combination leaves the packet as it is, including the outer ECT(1)
// over inner ECT(0) case that RFC 6040 would rewrite and Linux does not.
// A packet that is too short or not IP is left alone (ok true): the
// parsers before this judged it.
func ECNDecap(b []byte, off, end int, outerTOS uint8) (ok bool) {
	if outerTOS&3 != ECNCE || off < 0 || end > len(b) || end-off < 20 {
		return true
	}
	switch b[off] >> 4 {
	case 4:
		tos := b[off+1]
		switch tos & 3 {
		case ECNNotECT:
			return false
		case ECNCE:
			return true
		}
		// The checksum covers the 16-bit word of version/IHL and TOS.
		old := binary.BigEndian.Uint16(b[off:])
		b[off+1] = tos | ECNCE
		sum := binary.BigEndian.Uint16(b[off+10:])
		binary.BigEndian.PutUint16(b[off+10:], csumReplace16(sum, old, binary.BigEndian.Uint16(b[off:])))
	case 6:
		switch ecn := b[off+1] >> 4 & 3; ecn {
		case ECNNotECT:
			return false
		case ECNCE:
			return true
		}
		b[off+1] |= ECNCE << 4
	}
	return true
}

// csumReplace16 updates the ones'-complement checksum sum for one 16-bit
// word changed from old to new (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func csumReplace16(sum, old, new uint16) uint16 {
	acc := uint32(^sum) + uint32(^old) + uint32(new)
	acc = (acc & 0xffff) + acc>>16
	acc = (acc & 0xffff) + acc>>16
	return ^uint16(acc)
}
