// IP in UDP, as flannel's "udp" backend sends it: the raw inner IP packet
// is the whole UDP payload, with no header of its own.
//
//	+---------------------------+
//	|      Outer IP Header      |
//	+---------------------------+
//	|  UDP Header (port 8285)   |
//	+---------------------------+
//	|  Inner IPv4 or IPv6       |
//	|  packet                   |
//	+---------------------------+
//
// Encapsulation is PushUDP then PushIPv4 or PushIPv6.

package encap

// DecapIPUDP checks that the UDP payload b[off:end] is an IPv4 or IPv6
// packet, taking the version from its first nibble, and returns its
// offsets, trimmed to the packet's own length. An empty payload is
// DropTruncated; a version other than 4 or 6 and bad inner lengths are
// DropBadInner (see CheckInner). Any b, off and end are safe.
func DecapIPUDP(b []byte, off, end int) (innerOff, innerEnd int, r DropReason) {
	if !hasBytes(b, off, end, 1) {
		return 0, 0, DropTruncated
	}
	innerEnd, r = CheckInner(b, off, end, int(b[off]>>4))
	if r != OK {
		return 0, 0, r
	}
	return off, innerEnd, OK
}
