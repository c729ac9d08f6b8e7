package neigh

import (
	"net/netip"

	"tunnelplane/encap"
)

// icmpv6Checksum is the ICMPv6 checksum of msg for the pseudo-header of
// src and dst (16 bytes each), msg's checksum field counted as it stands:
// the value to store when the field is zero, 0 when the message is intact.
func icmpv6Checksum(src, dst, msg []byte) uint16 {
	return encap.ICMPv6Checksum(netip.AddrFrom16([16]byte(src)), netip.AddrFrom16([16]byte(dst)), msg)
}

// checksumOK reports whether msg's checksum field is correct.
func checksumOK(src, dst, msg []byte) bool { return icmpv6Checksum(src, dst, msg) == 0 }
