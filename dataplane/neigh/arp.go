package neigh

import "encoding/binary"

// ARP over Ethernet for IPv4 (RFC 826), 28 bytes after the Ethernet header:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Hardware type (1)         |     Protocol type (0x0800)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  HLEN (6)     |  PLEN (4)     |     Operation (1 req, 2 rep)  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Sender hardware address (6) ...                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| ... SHA       |          Sender protocol address (4)          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Target hardware address (6) ...                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| ... THA       |          Target protocol address (4)          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	arpLen          = 28
	arpHTypeEther   = 1
	arpOpRequest    = 1
	arpOpReply      = 2
	arpOffOp        = 6
	arpOffSHA       = 8
	arpOffSPA       = 14
	arpOffTHA       = 18
	arpOffTPA       = 24
	arpHLenEthernet = 6
	arpPLenIPv4     = 4
)

// handleARP handles the ARP frame buf[:flen]; buf extends to the end of the
// caller's buffer (room for padding). flen >= ethHdrLen.
func (r *Responder) handleARP(buf []byte, flen int) (Result, int) {
	if flen < ARPReplyLen {
		return Malformed, 0
	}
	a := buf[ethHdrLen:ARPReplyLen]
	if binary.BigEndian.Uint16(a[0:2]) != arpHTypeEther ||
		binary.BigEndian.Uint16(a[2:4]) != etherTypeIPv4 ||
		a[4] != arpHLenEthernet || a[5] != arpPLenIPv4 {
		return Malformed, 0
	}
	switch binary.BigEndian.Uint16(a[arpOffOp:]) {
	case arpOpRequest:
	case arpOpReply:
		return NotForUs, 0
	default:
		return Malformed, 0
	}
	sha := MAC(a[arpOffSHA : arpOffSHA+6])
	spa := [4]byte(a[arpOffSPA : arpOffSPA+4])
	tpa := [4]byte(a[arpOffTPA : arpOffTPA+4])
	if isGroup(sha[:]) {
		// Never answer to a multicast/broadcast address.
		return Malformed, 0
	}
	if !r.acceptsEthDst(buf[0:6]) || spa == tpa || !r.owns4(tpa) {
		// spa == tpa: a gratuitous ARP announces, nobody asks.
		return NotForUs, 0
	}

	copy(buf[0:6], sha[:])
	copy(buf[6:12], r.mac[:])
	// Ethernet type, hardware/protocol type and lengths stay as they are.
	binary.BigEndian.PutUint16(a[arpOffOp:], arpOpReply)
	copy(a[arpOffSHA:], r.mac[:])
	copy(a[arpOffSPA:], tpa[:])
	copy(a[arpOffTHA:], sha[:])
	copy(a[arpOffTPA:], spa[:])
	if len(buf) >= MinFrameLen {
		clear(buf[ARPReplyLen:MinFrameLen])
		return Replied, MinFrameLen
	}
	return Replied, ARPReplyLen
}
