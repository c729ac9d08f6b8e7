// Package udptunnelgso is a probe, not a backend: it finds out whether this
// kernel's tun driver takes one write of an outer VXLAN frame that holds a
// whole inner TCP TSO super-packet (virtio-net UDP-tunnel GSO, Linux 6.17+),
// what becomes of it on the way to a peer, and what it costs next to the
// software split plus sendmmsg that tunneld does today (issue 15, lead 1).
// Everything is in the tests (root only); README.md has the findings.
package udptunnelgso
