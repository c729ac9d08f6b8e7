package stats

import "tunnelplane/encap"

// Drop is why the data plane let go of a packet. Every drop anywhere in the
// data plane has exactly one reason, and every reason is counted.
//
// The first encap.NumDropReasons values mirror encap.DropReason one to one,
// so a wire-format verdict converts by a plain cast.
type Drop uint8

const (
	// Reasons the data plane adds to the wire-format ones.
	DropUnknownPeer    Drop = Drop(encap.NumDropReasons) + iota // outer source is no configured peer
	DropSpoofedInner                                            // inner source outside the sending peer's prefixes
	DropNoRoute                                                 // no peer for the inner destination (L3) and nothing to flood (L2)
	DropNotIP                                                   // device handed us something that is not IPv4/IPv6
	DropBadEtherType                                            // VXLAN frame in TUN mode that is neither IP nor a neighbour request
	DropNotForUs                                                // VXLAN frame in TUN mode for another MAC, or ARP/NDP for an address we do not own
	DropNeighMalformed                                          // broken ARP/NDP
	DropFamily                                                  // inner family the tunnel cannot carry (e.g. IPv6 into IPIP)
	DropTooBig                                                  // inner packet plus headers larger than the buffer or underlay allows
	DropPoolExhausted                                           // no free buffer (flooding, replies)
	DropRingFull                                                // hand-over ring full at shutdown
	DropDeviceWrite                                             // device refused the write
	DropUnderlayWrite                                           // sendmmsg failed for this packet
	DropLoop                                                    // frame learned from / sent back to its own source
	DropInnerOversize                                           // inner packet over the device MTU that is no TCP/UDP super-packet
	DropInnerChecksum                                           // inner super-packet whose checksum is neither partial nor correct
	DropTunnelGSOWrite                                          // the UDP-tunnel GSO TAP refused a frame (one super-packet)
	DropECNNotECT                                               // outer ECN CE on an inner packet that is not ECN-capable (RFC 6040: drop)
	NumDrops
)

var dataplaneDropNames = [...]string{
	"unknown_peer", "spoofed_inner", "no_route", "not_ip", "bad_ethertype",
	"not_for_us", "neigh_malformed", "family", "too_big", "pool_exhausted",
	"ring_full", "device_write", "underlay_write", "loop", "inner_oversize",
	"inner_checksum", "tunnel_gso_write", "ecn_not_ect",
}

// String returns the snake_case label used in logs and metrics.
func (d Drop) String() string {
	if d < Drop(encap.NumDropReasons) {
		return encap.DropReason(d).String()
	}
	i := int(d) - int(encap.NumDropReasons)
	if i < len(dataplaneDropNames) {
		return dataplaneDropNames[i]
	}
	return "unknown"
}
