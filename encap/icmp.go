package encap

import (
	"encoding/binary"
	"net/netip"
)

// ICMP "packet too big" messages, the answer a tunnel gives the source of
// an inner packet that cannot cross the tunnel unfragmented, as the Linux
// tunnel drivers do.
//
// ICMPv4 Destination Unreachable, code 4 (RFC 792, RFC 1191):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Type = 3    |   Code = 4    |           Checksum            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           unused = 0          |         Next-Hop MTU          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Internet Header + leading bytes of Original Datagram     |
//
// ICMPv6 Packet Too Big (RFC 4443 section 3.2):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Type = 2    |   Code = 0    |           Checksum            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                              MTU                              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        As much of the invoking packet as fits in 1280 bytes   |

const (
	ICMPHeaderLen = 8
	// icmp4Max is the largest ICMPv4 error, as Linux sends them (576).
	icmp4Max = 576
	// icmp6Max is the IPv6 minimum MTU, the most an ICMPv6 error may fill.
	icmp6Max = 1280
)

// TooBigLen returns the length of the "packet too big" message for the
// inner IP packet of length n and version v (4 or 6).
func TooBigLen(v, n int) int {
	if v == 6 {
		return min(IPv6Len+ICMPHeaderLen+n, icmp6Max)
	}
	return min(IPv4Len+ICMPHeaderLen+n, icmp4Max)
}

// PutTooBig writes, at dst[0:], an IP packet carrying the ICMP "packet too
// big" error for the inner packet orig (an IPv4 or IPv6 packet whose first
// nibble says which): from src (same family as orig), to orig's source, advertising mtu, quoting
// as much of orig as the message may hold. dst must have room for
// TooBigLen(version, len(orig)) bytes; it returns the bytes written, or 0
// when orig is not an IP packet or dst is too small.
func PutTooBig(dst, orig []byte, src netip.Addr, mtu int) int {
	if len(orig) < 1 {
		return 0
	}
	origSrc, _, ok := InnerAddrs(orig, 0, len(orig))
	if !ok {
		return 0
	}
	switch orig[0] >> 4 {
	case 4:
		n := TooBigLen(4, len(orig))
		if len(dst) < n || !src.Is4() {
			return 0
		}
		m := dst[IPv4Len:n]
		m[0], m[1] = 3, 4
		binary.BigEndian.PutUint16(m[2:], 0)
		binary.BigEndian.PutUint16(m[4:], 0)
		binary.BigEndian.PutUint16(m[6:], uint16(mtu))
		copy(m[ICMPHeaderLen:], orig)
		binary.BigEndian.PutUint16(m[2:], Checksum(m))
		PushIPv4(dst, IPv4Len, n, &IPv4Header{Src: src, Dst: origSrc, Protocol: ProtoICMP, TTL: 64, DF: false})
		return n
	case 6:
		n := TooBigLen(6, len(orig))
		if len(dst) < n || !src.Is6() {
			return 0
		}
		m := dst[IPv6Len:n]
		m[0], m[1] = 2, 0
		binary.BigEndian.PutUint16(m[2:], 0)
		binary.BigEndian.PutUint32(m[4:], uint32(mtu))
		copy(m[ICMPHeaderLen:], orig)
		binary.BigEndian.PutUint16(m[2:], ICMPv6Checksum(src, origSrc, m))
		PushIPv6(dst, IPv6Len, n, &IPv6Header{Src: src, Dst: origSrc, NextHeader: ProtoICMPv6, HopLimit: 64})
		return n
	}
	return 0
}

// MustNotFragment reports whether the IP packet b[off:end] may not be
// fragmented on its way: IPv4 with DF set, or any IPv6 packet (routers
// never fragment IPv6).
func MustNotFragment(b []byte, off, end int) bool {
	if off < 0 || end > len(b) || end-off < IPv4Len {
		return false
	}
	switch b[off] >> 4 {
	case 4:
		return b[off+6]&0x40 != 0
	case 6:
		return true
	}
	return false
}

// ICMPv6Checksum returns the ICMPv6 checksum (RFC 4443 section 2.3) of msg
// for the pseudo-header of src and dst, counting msg's checksum field as it
// stands: with the field zeroed it is the value to store; over a message
// with a correct checksum it is 0.
func ICMPv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	return finishChecksum(onesSum(msg, pseudoHeaderSum(src, dst, ProtoICMPv6, len(msg))))
}
