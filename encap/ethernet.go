// Ethernet II header (IEEE 802.3 clause 3, RFC 894 for IP over Ethernet):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Destination MAC Address                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Destination (cont.)           |      Source MAC Address       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Source (cont.)                             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           EtherType           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// No preamble or FCS: the kernel strips both. 802.1Q tags are not parsed.

package encap

import "encoding/binary"

// MAC is an Ethernet address. An array, not net.HardwareAddr, so that it is
// comparable, usable as a map key and free to copy.
type MAC = [6]byte

// PushEthernet writes a 14-byte Ethernet header into b[off-14:off] and
// returns off-14. This is the inner frame a VXLAN or GRE-TEB tunnel carries
// when the data plane reads IP packets from a TUN device.
//
// The caller guarantees 14 <= off <= len(b).
func PushEthernet(b []byte, off int, dst, src MAC, etherType uint16) int {
	start := off - EthernetLen
	hdr := b[start:off:off]
	copy(hdr[0:6], dst[:])
	copy(hdr[6:12], src[:])
	binary.BigEndian.PutUint16(hdr[12:], etherType)
	return start
}

// ParseEthernet reads the Ethernet header at b[off:end] and returns its
// addresses, EtherType and the payload offset (the payload ends at end).
// Fewer than 14 bytes or out-of-range offsets give DropTruncated. An
// 802.1Q-tagged frame is returned with EtherType 0x8100 and the payload at
// the tag; callers that do not handle VLANs drop it on the EtherType.
func ParseEthernet(b []byte, off, end int) (dst, src MAC, etherType uint16, payOff int, r DropReason) {
	if !hasBytes(b, off, end, EthernetLen) {
		return dst, src, 0, 0, DropTruncated
	}
	p := b[off : off+EthernetLen]
	dst = MAC(p[0:6])
	src = MAC(p[6:12])
	return dst, src, binary.BigEndian.Uint16(p[12:]), off + EthernetLen, OK
}
