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
// encap imports nothing of the project.
package encap
