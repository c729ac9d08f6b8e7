package neigh

import "encoding/binary"

// The Internet checksum (RFC 1071) over the ICMPv6 pseudo-header (RFC 8200
// §8.1): source, destination, 32-bit upper-layer length, 3 zero bytes and
// next header 58, followed by the ICMPv6 message.

// sum adds b, as big-endian 16-bit words (an odd last byte padded with zero),
// to the one's-complement accumulator s. It adds 32-bit words to a 64-bit
// accumulator: since 2^16 ≡ 1 (mod 2^16-1), folding the result gives the same
// 16-bit sum, with a quarter of the additions and no overflow for any length
// that fits in memory.
func sum(s uint64, b []byte) uint64 {
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// fold reduces a one's-complement accumulator to 16 bits.
func fold(s uint64) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// icmpv6Sum returns the folded (not complemented) one's-complement sum of the
// pseudo-header for src, dst (16 bytes each) and the ICMPv6 message msg
// (len(msg) < 2^32), including msg's checksum field as it stands.
func icmpv6Sum(src, dst, msg []byte) uint16 {
	s := sum(0, src)
	s = sum(s, dst)
	s += uint64(len(msg)) + ipProtoICMPv6
	return fold(sum(s, msg))
}

// checksumOK reports whether msg's checksum field is correct: the sum over
// the pseudo-header and the message, checksum included, is all ones.
func checksumOK(src, dst, msg []byte) bool {
	return icmpv6Sum(src, dst, msg) == 0xffff
}
