// UDP header, RFC 768:
//
//	 0      7 8     15 16    23 24    31
//	+--------+--------+--------+--------+
//	|     Source      |   Destination   |
//	|      Port       |      Port       |
//	+--------+--------+--------+--------+
//	|                 |                 |
//	|     Length      |    Checksum     |
//	+--------+--------+--------+--------+
//
// Length counts header and data. The checksum covers a pseudo-header (IP
// source, destination, protocol, UDP length), the header and the data; 0
// means "no checksum", so a computed 0 is sent as 0xFFFF.

package encap

import (
	"encoding/binary"
	"net/netip"
)

// PushUDP writes the 8-byte UDP header into b[off-8:off] for the payload
// b[off:end], with length end-(off-8) and checksum 0, and returns off-8.
// A zero checksum is what tunnels send by default (RFC 7348, RFC 6935);
// call SetUDPChecksum afterwards to fill it in.
//
// The caller guarantees 8 <= off <= end <= len(b) and end-off <= 65527.
func PushUDP(b []byte, off, end int, srcPort, dstPort uint16) int {
	start := off - UDPLen
	hdr := b[start:off:off]
	binary.BigEndian.PutUint16(hdr[0:], srcPort)
	binary.BigEndian.PutUint16(hdr[2:], dstPort)
	binary.BigEndian.PutUint16(hdr[4:], uint16(end-start))
	hdr[6], hdr[7] = 0, 0
	return start
}

// SetUDPChecksum computes and stores the checksum of the UDP datagram
// b[udpOff:end] (header included) with the pseudo-header built from src
// and dst: the IPv4 form when src is IPv4, the IPv6 form otherwise. A
// computed 0 is stored as 0xFFFF because 0 means "no checksum".
//
// The caller guarantees 0 <= udpOff, udpOff+8 <= end <= len(b).
func SetUDPChecksum(b []byte, udpOff, end int, src, dst netip.Addr) {
	d := b[udpOff:end]
	d[6], d[7] = 0, 0
	sum := finishChecksum(onesSum(d, pseudoHeaderSum(src, dst, ProtoUDP, len(d))))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(d[6:], sum)
}

// ParseUDP validates the UDP header at b[off:end] and returns the ports and
// payload offsets. The length field must satisfy 8 <= length <= end-off
// (DropTruncated); bytes beyond it are ignored. When verify is true and the
// checksum field is non-zero, the checksum is checked against the
// pseudo-header from src and dst (DropBadChecksum). A zero checksum is
// accepted for IPv4 and also for IPv6, because tunnel endpoints send zero
// checksums over IPv6 (RFC 6935, RFC 6936).
//
// Any b, off and end are safe. Results are meaningful only when r is OK.
func ParseUDP(b []byte, off, end int, src, dst netip.Addr, verify bool) (srcPort, dstPort uint16, payOff, payEnd int, r DropReason) {
	if !hasBytes(b, off, end, UDPLen) {
		return 0, 0, 0, 0, DropTruncated
	}
	p := b[off:end]
	length := int(binary.BigEndian.Uint16(p[4:]))
	if length < UDPLen || length > len(p) {
		return 0, 0, 0, 0, DropTruncated
	}
	if verify && binary.BigEndian.Uint16(p[6:]) != 0 {
		if finishChecksum(onesSum(p[:length], pseudoHeaderSum(src, dst, ProtoUDP, length))) != 0 {
			return 0, 0, 0, 0, DropBadChecksum
		}
	}
	return binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:]), off + UDPLen, off + length, OK
}
