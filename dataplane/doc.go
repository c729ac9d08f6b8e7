// Package dataplane is the forwarder's composition and pipeline: the peer
// table and FDB (table.go), the per-encapsulation codec (tunnel.go), the
// egress and ingress reader loops and their batch state (pipeline.go,
// batch.go), the writers (writers.go), path MTU verdicts (pmtu.go), the
// policy for a kernel peer's partial checksums and super-packets
// (partial.go), and the opening of the real parts (open.go). It joins
// encap (wire formats), ring (hand-over and buffers), stats (counters and
// drop reasons), device (TUN/TAP queues), underlay (sockets) and netcfg
// (links, addresses, routes, path MTU).
//
// New takes its parts handed in (Parts): device queues and sockets
// through their packages' batch seams (device.Device,
// underlay.Reader/Writer/Sender), routes and path MTU through Network, so
// tests hand it fakes (devicetest, underlaytest). Open opens the real
// ones a config describes (device.Open, underlay.Open, netcfg) for
// cmd/tunneld.
//
// It is platform-neutral: it does not import Prometheus (cmd/tunneld
// exports Snapshot), wireguard's tun or water (device), the socket system
// calls (underlay) or netlink (netcfg). Only cmd imports it.
package dataplane
