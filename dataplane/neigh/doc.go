// Package neigh answers neighbour discovery for the data plane's own overlay
// addresses in VXLAN TUN mode.
//
// In TUN mode the data plane carries IP packets inside Ethernet frames that it
// writes itself, so no kernel interface owns the overlay addresses at layer 2.
// A kernel vxlan peer that has no permanent neighbour entry for us sends an
// ARP request (IPv4) or a Neighbour Solicitation (IPv6, RFC 4861) through the
// tunnel; this package turns such a frame, in place, into the ARP reply or
// Neighbour Advertisement that the data plane sends back to the peer.
//
// The package owns:
//   - the fixed set of addresses and the MAC it answers for (Responder, built
//     once by New and read-only afterwards, so safe for concurrent use);
//   - validation of ARP requests (RFC 826) and Neighbour Solicitations
//     (RFC 4861 §7.1.1, including the ICMPv6 checksum) carried in Ethernet;
//   - building the reply over the request in the caller's buffer, without
//     allocating, and the typed Result saying why it did not answer.
//
// It does not own sending: the caller sends b[off:off+n] back through the
// tunnel to the VTEP the request came from. It does not learn the peer's
// addresses either (no cache): the reply goes to the link-layer address the
// request names. Frames with an 802.1Q tag are NotNeigh (TUN mode writes and
// expects untagged frames).
package neigh
