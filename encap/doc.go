// Package encap owns the tunnel wire formats: outer IPv4/IPv6 and UDP
// headers, IPIP (protocol 4), 6in4/SIT (protocol 41), GRE (RFC 2784/2890),
// VXLAN (RFC 7348), IP-in-UDP, and the inner Ethernet header.
//
// Every function works in place on a caller's buffer. Encapsulation writes
// headers into the headroom in front of the payload and returns the new
// start offset; the payload is never copied. Decapsulation validates every
// length, version, flag and checksum it must and returns the inner packet's
// offsets or a DropReason. Nothing here does I/O, allocates, or panics on
// any input, so the data plane can call it per packet.
//
// A packet is b[off:end]. Egress for VXLAN over IPv4, innermost first:
//
//	s := PushEthernet(b, off, vtepMAC, ourMAC, EtherTypeIPv4)
//	s = PushVXLAN(b, s, vni)
//	s = PushUDP(b, s, end, SourcePort(FlowHash(b, off, end), SourcePortMin, SourcePortMax), PortVXLAN)
//	s = PushIPv4(b, s, end, &outer) // the packet is now b[s:end]
//
// Ingress runs the other way, each step returning the next window:
//
//	payOff, payEnd, r := ParseIPv4(b, off, end, &outer)
//	_, _, udpOff, udpEnd, r := ParseUDP(b, payOff, payEnd, outer.Src, outer.Dst, true)
//	ethOff, r := DecapVXLAN(b, udpOff, udpEnd, vni)
//
// Push functions trust their caller: off must leave room for the header
// (CheckEncap checks headroom and MTU once per packet) and end <= len(b).
// Parse and Decap functions trust nothing: any b, off and end, including
// negative or out-of-range offsets, yields offsets within [off, end] and
// OK, or a DropReason. Results other than r are meaningful only when r is
// OK.
//
// encap imports nothing of the project.
package encap
