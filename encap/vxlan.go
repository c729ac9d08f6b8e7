// VXLAN header, RFC 7348 section 5:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The full stack on the wire is outer IP, UDP (destination port 4789, or
// 8472 for flannel), this header, then the inner Ethernet frame.

package encap

import "encoding/binary"

const (
	vxlanFlagI = 0x08 // "VNI is valid"; must be set

	// MaxVNI is the largest VXLAN network identifier (24 bits). A VNI
	// above it can never match on receive.
	MaxVNI = 1<<24 - 1
)

// PushVXLAN writes the 8-byte VXLAN header with the I flag and vni (its low
// 24 bits) into b[off-8:off] and returns off-8. Reserved fields are zero.
//
// The caller guarantees 8 <= off <= len(b).
func PushVXLAN(b []byte, off int, vni uint32) int {
	start := off - VXLANLen
	hdr := b[start:off:off]
	binary.BigEndian.PutUint32(hdr[0:], vxlanFlagI<<24)
	binary.BigEndian.PutUint32(hdr[4:], vni<<8)
	return start
}

// DecapVXLAN parses the VXLAN header at b[off:end] (the UDP payload) and
// returns the offset of the inner Ethernet frame, which ends at end. It
// checks: 8 bytes present (DropTruncated); the I flag set (DropBadFlags);
// the VNI equal to vni (DropBadVNI); an Ethernet header following
// (DropTruncated). The other flag and reserved bits are ignored, as RFC
// 7348 tells receivers to do, so extensions such as group policy pass.
//
// Any b, off and end are safe.
func DecapVXLAN(b []byte, off, end int, vni uint32) (innerOff int, r DropReason) {
	if !hasBytes(b, off, end, VXLANLen) {
		return 0, DropTruncated
	}
	p := b[off:end]
	if p[0]&vxlanFlagI == 0 {
		return 0, DropBadFlags
	}
	if binary.BigEndian.Uint32(p[4:])>>8 != vni {
		return 0, DropBadVNI
	}
	if len(p) < VXLANLen+EthernetLen {
		return 0, DropTruncated
	}
	return off + VXLANLen, OK
}

// VXLANVNI returns the VNI of the VXLAN header at b[off:end], for a
// receiver that serves several VNIs and must choose before DecapVXLAN.
// ok is false when fewer than 8 bytes are present or the I flag is clear.
func VXLANVNI(b []byte, off, end int) (vni uint32, ok bool) {
	if !hasBytes(b, off, end, VXLANLen) || b[off]&vxlanFlagI == 0 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[off+4:]) >> 8, true
}
