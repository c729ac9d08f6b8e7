package encap

import (
	"encoding/binary"
	"math/bits"
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
	if len(b) >= 64 {
		n := len(b) &^ 31
		acc += uint64(sumLE(b[:n]))
		b = b[n:]
	}
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

// sumLE is the ones' complement sum of b (a multiple of 32 bytes) folded
// to 16 bits, in big-endian byte order. It adds little-endian 64-bit words
// with carries, four per round: the sum does not depend on the byte order
// of the words it is taken over, except that the result comes out byte-
// swapped (RFC 1071 section 2(B)), and 2^16-1 divides 2^64-1, so the
// 64-bit end-around-carry sum folds to the same 16-bit one. About three
// times the speed of onesSum's 32-bit loop on payloads (BenchmarkSum).
func sumLE(b []byte) uint16 {
	var s, carries, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), 0)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:]), c)
		carries += c
		b = b[32:]
	}
	s, c = bits.Add64(s, carries, 0)
	s += c // cannot overflow: after a carry s is at most 2^64-2
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return bits.ReverseBytes16(uint16(s))
}

// Sum adds b to the ones' complement accumulator acc, for checksums over
// data spread across several buffers (each but the last of even length).
// Fold turns the total into the 16-bit sum.
func Sum(b []byte, acc uint64) uint64 { return onesSum(b, acc) }

// Fold folds an accumulator from Sum to 16 bits without complementing it:
// the value a CHECKSUM_PARTIAL (virtio NEEDS_CSUM) packet carries in its
// checksum field is Fold of its pseudo-header sum.
func Fold(acc uint64) uint16 { return ^finishChecksum(acc) }

// PseudoHeaderSum is the accumulator of the TCP/UDP pseudo-header; see
// pseudoHeaderSum.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint64 {
	return pseudoHeaderSum(src, dst, proto, length)
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
