// Package packetsock is a probe, not a backend: it measures whether sending
// IPIP through AF_PACKET (sendmmsg on a packet socket bound to the underlay
// device, or a TPACKET_V2 TX ring, with and without PACKET_QDISC_BYPASS)
// costs less per packet than the raw IP socket sendmmsg that tunneld uses
// today, and whether a TPACKET_V3 RX ring (one wake per block) receives
// cheaper than raw-socket recvmmsg (issue 15, lead 3). It also records what
// the packet-socket path bypasses (qdisc, netfilter, taps, fragmentation).
// Everything is in the tests (root only); README.md has the findings.
package packetsock
