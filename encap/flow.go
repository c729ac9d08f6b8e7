// Inner flow identification for the outer UDP source port.
//
// RFC 7348 section 5 recommends that the VXLAN source port be "a hash of
// the inner Ethernet frame's headers", within the dynamic/private range
// 49152-65535, so that ECMP routers and receive-side scaling on the path
// spread tunnelled flows instead of seeing one big flow per VTEP pair:
//
//	inner (src IP, dst IP, protocol, src port, dst port)
//	      |
//	      v  FlowHash
//	  32-bit hash  --SourcePort-->  outer UDP source port in [min, max]
//
// The ports are hashed only for unfragmented TCP and UDP, so that every
// fragment of a datagram (only the first carries the ports) and every
// packet of a flow get the same source port; reordering within a flow
// hurts TCP.

package encap

import (
	"encoding/binary"
	"net/netip"
)

// Default source port range for SourcePort: the IANA dynamic/private range
// RFC 7348 recommends. (Linux's vxlan driver uses the local ephemeral port
// range instead, 32768-60999 by default.)
const (
	SourcePortMin = 49152
	SourcePortMax = 65535
)

const (
	flowSeed = 0x243f6a8885a308d3 // digits of pi: any odd non-trivial constant works
	flowMul  = 0x9e3779b97f4a7c15 // 2^64 / golden ratio, the Fibonacci hashing multiplier
)

// flowMix folds one 64-bit word into the hash: an xor, a multiply that
// spreads every input bit upward, and an xorshift that brings the high bits
// back down so the next multiply sees them.
func flowMix(h, w uint64) uint64 {
	h = (h ^ w) * flowMul
	return h ^ h>>32
}

// FlowHash hashes the inner flow of the IP packet b[off:end] (IPv4 or IPv6
// by its first nibble): source and destination address, protocol, and for
// unfragmented TCP and UDP the two ports. IPv6 extension headers are not
// walked; a packet with one hashes without ports. It is stable across runs
// and processes (no random seed), allocation-free, and never 0 for a
// parsable packet: 0 means b[off:end] is not an IP packet.
func FlowHash(b []byte, off, end int) uint32 {
	if !hasBytes(b, off, end, 1) {
		return 0
	}
	p := b[off:end]
	h := uint64(flowSeed)
	var proto uint8
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if len(p) < IPv4Len || ihl < IPv4Len || ihl > len(p) {
			return 0
		}
		proto = p[9]
		h = flowMix(h, binary.BigEndian.Uint64(p[12:20]))
		if binary.BigEndian.Uint16(p[6:])&(ipv4FlagMF|ipv4OffsetMask) == 0 {
			l4 = p[ihl:]
		}
	case 6:
		if len(p) < IPv6Len {
			return 0
		}
		proto = p[6]
		h = flowMix(h, binary.BigEndian.Uint64(p[8:16]))
		h = flowMix(h, binary.BigEndian.Uint64(p[16:24]))
		h = flowMix(h, binary.BigEndian.Uint64(p[24:32]))
		h = flowMix(h, binary.BigEndian.Uint64(p[32:40]))
		l4 = p[IPv6Len:]
	default:
		return 0
	}
	var ports uint64
	if (proto == ProtoTCP || proto == ProtoUDP) && len(l4) >= 4 {
		ports = uint64(binary.BigEndian.Uint32(l4))
	}
	h = flowMix(h, uint64(proto)<<32|ports)
	x := uint32(h) ^ uint32(h>>32)
	if x == 0 {
		x = 1 // keep 0 for "unparsable"
	}
	return x
}

// SourcePort maps hash onto [min, max] inclusive (swapped if min > max).
// It uses the multiply-shift range reduction rather than a modulo: no
// division, and the high bits of the hash, which mix best, pick the port.
func SourcePort(hash uint32, min, max uint16) uint16 {
	if min > max {
		min, max = max, min
	}
	span := uint64(max-min) + 1
	return min + uint16(uint64(hash)*span>>32)
}

// InnerAddrs returns the source and destination address of the IP packet
// b[off:end], IPv4 or IPv6 by its first nibble, for anti-spoofing and route
// lookups. ok is false when the version is neither or the fixed header is
// incomplete; nothing else is validated.
func InnerAddrs(b []byte, off, end int) (src, dst netip.Addr, ok bool) {
	if !hasBytes(b, off, end, 1) {
		return src, dst, false
	}
	p := b[off:end]
	switch p[0] >> 4 {
	case 4:
		if len(p) < IPv4Len {
			return src, dst, false
		}
		return netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), true
	case 6:
		if len(p) < IPv6Len {
			return src, dst, false
		}
		return netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), true
	}
	return src, dst, false
}
