// IPv6 fixed header, RFC 8200 section 3:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+                         Source Address                        +
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+                      Destination Address                      +
//	|                                                               |
//	+                                                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Payload Length counts the bytes after this 40-byte header, extension
// headers included.

package encap

import (
	"encoding/binary"
	"net/netip"
)

// IPv6Header holds the IPv6 fixed-header fields. Extension headers are not
// parsed: NextHeader is whatever follows the fixed header.
type IPv6Header struct {
	Src, Dst     netip.Addr
	NextHeader   uint8
	HopLimit     uint8
	TrafficClass uint8
	FlowLabel    uint32 // low 20 bits used
}

// PushIPv6 writes the 40-byte fixed header into b[off-40:off] for the
// payload b[off:end] (payload length = end-off) and returns off-40.
//
// The caller guarantees 40 <= off <= end <= len(b) and end-off <= 65535
// (no jumbograms). An IPv4 Src or Dst is written in its IPv4-mapped form.
func PushIPv6(b []byte, off, end int, h *IPv6Header) int {
	start := off - IPv6Len
	hdr := b[start:off:off]
	binary.BigEndian.PutUint32(hdr[0:], 6<<28|uint32(h.TrafficClass)<<20|h.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(hdr[4:], uint16(end-off))
	hdr[6] = h.NextHeader
	hdr[7] = h.HopLimit
	src, dst := h.Src.As16(), h.Dst.As16()
	copy(hdr[8:24], src[:])
	copy(hdr[24:40], dst[:])
	return start
}

// ParseIPv6 validates the IPv6 fixed header at b[off:end] and returns the
// payload offsets. It checks: the window holds 40 bytes (DropTruncated),
// version 6 (DropBadVersion), payload length <= the bytes present
// (DropTruncated; trailing bytes are ignored), and Next Header is not the
// Fragment header (DropFragment: we do not reassemble). Any other extension
// header is returned in NextHeader for the caller's protocol check.
//
// h is filled when r is OK or DropFragment. Any b, off and end are safe.
// A payload length of 0 (jumbogram) yields an empty payload.
func ParseIPv6(b []byte, off, end int, h *IPv6Header) (payOff, payEnd int, r DropReason) {
	if !hasBytes(b, off, end, IPv6Len) {
		return 0, 0, DropTruncated
	}
	p := b[off:end]
	if p[0]>>4 != 6 {
		return 0, 0, DropBadVersion
	}
	plen := int(binary.BigEndian.Uint16(p[4:]))
	if plen > len(p)-IPv6Len {
		return 0, 0, DropTruncated
	}
	w := binary.BigEndian.Uint32(p)
	h.TrafficClass = uint8(w >> 20)
	h.FlowLabel = w & 0xfffff
	h.NextHeader = p[6]
	h.HopLimit = p[7]
	h.Src = netip.AddrFrom16([16]byte(p[8:24]))
	h.Dst = netip.AddrFrom16([16]byte(p[24:40]))
	if h.NextHeader == protoIPv6Fragment {
		return 0, 0, DropFragment
	}
	return off + IPv6Len, off + IPv6Len + plen, OK
}
