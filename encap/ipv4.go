// IPv4 header, RFC 791 section 3.1:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Flags (3 bits): reserved (must be 0), DF (don't fragment), MF (more
// fragments). IHL counts 32-bit words, so 5 means no options.

package encap

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipv4FlagDF     = 0x4000
	ipv4FlagMF     = 0x2000
	ipv4OffsetMask = 0x1fff
)

// IPv4Header holds the IPv4 fields a tunnel sets or checks. Options are
// neither written nor returned.
type IPv4Header struct {
	Src, Dst netip.Addr
	Protocol uint8
	TTL      uint8
	TOS      uint8
	ID       uint16
	DF       bool
}

// PushIPv4 writes a 20-byte header (no options) into b[off-20:off] for the
// payload b[off:end], computes the header checksum and returns off-20.
//
// The caller guarantees 20 <= off <= end <= len(b) and end-off <= 65515 so
// the total length fits its field; a call that breaks the first rule panics
// as any out-of-range slice does. h.Src and h.Dst must be IPv4 (or
// IPv4-mapped) addresses; for any other address the low 32 bits are written.
func PushIPv4(b []byte, off, end int, h *IPv4Header) int {
	start := off - IPv4Len
	hdr := b[start:off:off]
	hdr[0] = 0x45 // version 4, IHL 5
	hdr[1] = h.TOS
	binary.BigEndian.PutUint16(hdr[2:], uint16(end-start))
	binary.BigEndian.PutUint16(hdr[4:], h.ID)
	var frag uint16
	if h.DF {
		frag = ipv4FlagDF
	}
	binary.BigEndian.PutUint16(hdr[6:], frag)
	hdr[8] = h.TTL
	hdr[9] = h.Protocol
	hdr[10], hdr[11] = 0, 0
	putAddr4(hdr[12:16], h.Src)
	putAddr4(hdr[16:20], h.Dst)
	binary.BigEndian.PutUint16(hdr[10:], IPv4Checksum(hdr))
	return start
}

// putAddr4 writes the IPv4 address a as 4 bytes. As4 is only called for
// an IPv4 address because it panics on the zero Addr and on IPv6; anything
// else goes through As16, which never panics.
func putAddr4(dst []byte, a netip.Addr) {
	if a.Is4() {
		a4 := a.As4()
		copy(dst[:4], a4[:])
		return
	}
	a16 := a.As16()
	copy(dst[:4], a16[12:])
}

// ParseIPv4 validates the IPv4 header at b[off:end] and returns the offsets
// of its payload. It checks, in order: the window holds 20 bytes
// (DropTruncated), version 4 (DropBadVersion), 5 <= IHL and IHL*4 within
// the data (DropBadHeaderLen), IHL*4 <= total length (DropBadHeaderLen),
// total length <= end-off (DropTruncated), the header checksum
// (DropBadChecksum), and that the packet is not a fragment: MF set or a
// non-zero offset gives DropFragment because we do not reassemble.
//
// Bytes beyond the total length (Ethernet padding) are ignored: payEnd is
// off + total length. h is filled when r is OK or DropFragment and left
// untouched otherwise. Any b, off and end are safe; out-of-range offsets
// give DropTruncated. Offsets are meaningful only when r is OK.
func ParseIPv4(b []byte, off, end int, h *IPv4Header) (payOff, payEnd int, r DropReason) {
	if !hasBytes(b, off, end, IPv4Len) {
		return 0, 0, DropTruncated
	}
	p := b[off:end]
	if p[0]>>4 != 4 {
		return 0, 0, DropBadVersion
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < IPv4Len || ihl > len(p) {
		return 0, 0, DropBadHeaderLen
	}
	total := int(binary.BigEndian.Uint16(p[2:]))
	if total < ihl {
		return 0, 0, DropBadHeaderLen
	}
	if total > len(p) {
		return 0, 0, DropTruncated
	}
	if IPv4Checksum(p[:ihl]) != 0 {
		return 0, 0, DropBadChecksum
	}
	frag := binary.BigEndian.Uint16(p[6:])
	h.Src = netip.AddrFrom4([4]byte(p[12:16]))
	h.Dst = netip.AddrFrom4([4]byte(p[16:20]))
	h.Protocol = p[9]
	h.TTL = p[8]
	h.TOS = p[1]
	h.ID = binary.BigEndian.Uint16(p[4:])
	h.DF = frag&ipv4FlagDF != 0
	if frag&(ipv4FlagMF|ipv4OffsetMask) != 0 {
		return 0, 0, DropFragment
	}
	return off + ihl, off + total, OK
}

// IPv4Checksum returns the RFC 1071 checksum of the IPv4 header hdr
// (including any options). Over a header whose checksum field is zero it is
// the value to store; over a received header it is 0 when the stored
// checksum is correct.
func IPv4Checksum(hdr []byte) uint16 {
	if len(hdr) == IPv4Len {
		// The common header without options: five loads, no loop.
		acc := uint64(binary.BigEndian.Uint32(hdr[0:])) + uint64(binary.BigEndian.Uint32(hdr[4:])) +
			uint64(binary.BigEndian.Uint32(hdr[8:])) + uint64(binary.BigEndian.Uint32(hdr[12:])) +
			uint64(binary.BigEndian.Uint32(hdr[16:20]))
		return finishChecksum(acc)
	}
	return finishChecksum(onesSum(hdr, 0))
}
