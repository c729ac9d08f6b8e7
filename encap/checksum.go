package encap

import (
	"encoding/binary"
	"net/netip"
)

// The Internet checksum (RFC 1071) is the ones' complement of the ones'
// complement sum of 16-bit big-endian words. IPv4, UDP, GRE and ICMP share
// these helpers.
//
// Because 2^16 ≡ 1 (mod 2^16-1), adding 32-bit words into a 64-bit
// accumulator and folding at the end gives the same result as adding 16-bit
// words one at a time, with half the loads (RFC 1071 section 2(B)).

// onesSum adds b to acc as big-endian 16-bit words; an odd trailing byte is
// padded with a zero byte, as RFC 1071 says.
func onesSum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// finishChecksum folds acc to 16 bits and complements it. Over data whose
// checksum field is zero the result is the value to store; over data that
// carries a correct checksum the result is 0.
//
// The folds are a fixed sequence rather than a loop so that they compile to
// straight-line code. Each keeps the value modulo 2^16-1 and never turns a
// non-zero sum into 0; the bounds: < 2^33, < 0x30000, <= 0x10001, <= 0xffff.
func finishChecksum(acc uint64) uint16 {
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return ^uint16(acc)
}

// Checksum returns the RFC 1071 Internet checksum of b, e.g. for an ICMP
// message with its checksum field zeroed. Over data that already carries a
// correct checksum it returns 0.
func Checksum(b []byte) uint16 {
	return finishChecksum(onesSum(b, 0))
}

// pseudoHeaderSum is the ones' complement sum of the pseudo-header that UDP
// (and TCP) checksums cover: RFC 768 for IPv4, RFC 8200 section 8.1 for
// IPv6. The IPv4 form is used when src is IPv4 or IPv4-mapped, because a
// v4-mapped address only ever stands for an IPv4 endpoint.
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint64 {
	s, d := src.As16(), dst.As16()
	var acc uint64
	if src.Is4() || src.Is4In6() {
		acc = uint64(binary.BigEndian.Uint32(s[12:])) + uint64(binary.BigEndian.Uint32(d[12:]))
	} else {
		acc = onesSum(s[:], 0)
		acc = onesSum(d[:], acc)
	}
	// The length is a 16-bit field for IPv4 and a 32-bit one for IPv6;
	// adding the value whole is the same modulo 2^16-1 in both cases.
	return acc + uint64(proto) + uint64(length)
}
