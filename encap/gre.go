// GRE header, RFC 2784 section 2 with the Key and Sequence Number
// extensions of RFC 2890 section 2:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|C| |K|S| Reserved0       | Ver |         Protocol Type         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Checksum (optional)      |       Reserved1 (Optional)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Key (optional)                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Sequence Number (Optional)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// C: checksum present; it covers the GRE header and the payload.
// K, S: key and sequence number present (RFC 2890).
// Bit 1 is RFC 1701's routing-present bit, bits 4-7 its strict source route
// and recursion control. Protocol Type is the payload's EtherType.

package encap

import "encoding/binary"

const (
	greFlagC = 0x80 // first byte
	greFlagK = 0x20
	greFlagS = 0x10

	// greMustBeZero masks bits 1 and 4-5 of the first byte. RFC 2784 says
	// a receiver MUST discard a packet where any of bits 1-5 is set (bits 2
	// and 3 became K and S in RFC 2890) and MUST ignore bits 6-12, so
	// those are not checked: rejecting them would break peers that set
	// them, which the RFC allows.
	greMustBeZero = 0x4c
	greVersion    = 0x07 // second byte
)

// GREHeader holds a GRE header's fields. The checksum itself is not kept:
// PushGRE computes it and DecapGRE verifies it.
type GREHeader struct {
	Protocol    uint16 // EtherType of the payload: 0x0800, 0x86DD, 0x6558
	HasChecksum bool
	HasKey      bool
	Key         uint32
	HasSeq      bool
	Seq         uint32
}

// Len returns the header's length on the wire: 4, plus 4 for each of
// checksum, key and sequence number present.
func (h *GREHeader) Len() int {
	n := GREBaseLen
	if h.HasChecksum {
		n += 4
	}
	if h.HasKey {
		n += 4
	}
	if h.HasSeq {
		n += 4
	}
	return n
}

// PushGRE writes h into b[off-h.Len():off] for the payload b[off:end] and
// returns off-h.Len(). When h.HasChecksum is set, the checksum over the GRE
// header and the payload is computed; that reads the whole payload, so it
// costs in proportion to its length.
//
// The caller guarantees h.Len() <= off <= end <= len(b).
func PushGRE(b []byte, off, end int, h *GREHeader) int {
	start := off - h.Len()
	hdr := b[start:off:off]
	var flags byte
	if h.HasChecksum {
		flags |= greFlagC
	}
	if h.HasKey {
		flags |= greFlagK
	}
	if h.HasSeq {
		flags |= greFlagS
	}
	hdr[0], hdr[1] = flags, 0 // version 0
	binary.BigEndian.PutUint16(hdr[2:], h.Protocol)
	i := GREBaseLen
	if h.HasChecksum {
		binary.BigEndian.PutUint32(hdr[i:], 0) // checksum and Reserved1
		i += 4
	}
	if h.HasKey {
		binary.BigEndian.PutUint32(hdr[i:], h.Key)
		i += 4
	}
	if h.HasSeq {
		binary.BigEndian.PutUint32(hdr[i:], h.Seq)
	}
	if h.HasChecksum {
		binary.BigEndian.PutUint16(hdr[4:], Checksum(b[start:end]))
	}
	return start
}

// GREExpect says what the receiver is configured for: whether a key is
// required and which. A receiver without a key refuses keyed packets, so
// two tunnels told apart by key never leak into each other.
type GREExpect struct {
	HasKey bool
	Key    uint32
}

// DecapGRE parses the GRE header at b[off:end] (the outer IP payload) and
// returns the inner packet's offsets. It checks, in order: 4 bytes present
// (DropTruncated); version 0 and the routing, strict-source-route and
// recursion bits clear (DropBadFlags); the optional fields present
// (DropTruncated); the checksum when C is set (DropBadChecksum); key
// presence and value against want (DropBadKey); the protocol type is
// 0x0800, 0x86DD or 0x6558 (DropBadProtocol). An IPv4 or IPv6 payload is
// then checked with CheckInner and trimmed to its own length; a 0x6558
// payload must hold at least an Ethernet header (DropTruncated) and ends at
// end. The sequence number is returned, not checked: RFC 2890 makes
// in-order delivery optional and we do not reorder.
//
// h is filled once the flags are valid. Any b, off and end are safe.
func DecapGRE(b []byte, off, end int, want GREExpect, h *GREHeader) (innerOff, innerEnd int, r DropReason) {
	if !hasBytes(b, off, end, GREBaseLen) {
		return 0, 0, DropTruncated
	}
	p := b[off:end]
	if p[0]&greMustBeZero != 0 || p[1]&greVersion != 0 {
		return 0, 0, DropBadFlags
	}
	h.HasChecksum = p[0]&greFlagC != 0
	h.HasKey = p[0]&greFlagK != 0
	h.HasSeq = p[0]&greFlagS != 0
	h.Protocol = binary.BigEndian.Uint16(p[2:])
	h.Key, h.Seq = 0, 0
	n := h.Len()
	if len(p) < n {
		return 0, 0, DropTruncated
	}
	i := GREBaseLen
	if h.HasChecksum {
		if Checksum(p) != 0 {
			return 0, 0, DropBadChecksum
		}
		i += 4
	}
	if h.HasKey {
		h.Key = binary.BigEndian.Uint32(p[i:])
		i += 4
	}
	if h.HasSeq {
		h.Seq = binary.BigEndian.Uint32(p[i:])
	}
	if h.HasKey != want.HasKey || (want.HasKey && h.Key != want.Key) {
		return 0, 0, DropBadKey
	}
	innerOff = off + n
	switch h.Protocol {
	case EtherTypeIPv4:
		innerEnd, r = CheckInner(b, innerOff, end, 4)
	case EtherTypeIPv6:
		innerEnd, r = CheckInner(b, innerOff, end, 6)
	case EtherTypeTEB:
		innerEnd, r = end, OK
		if end-innerOff < EthernetLen {
			r = DropTruncated
		}
	default:
		return 0, 0, DropBadProtocol
	}
	if r != OK {
		return 0, 0, r
	}
	return innerOff, innerEnd, OK
}
