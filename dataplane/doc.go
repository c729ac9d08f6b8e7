// Package dataplane is the forwarder's composition and pipeline: the peer
// table and FDB (table.go), the per-encapsulation codec (tunnel.go), the
// egress and ingress reader loops and their batch state (pipeline.go,
// batch.go), the writers (writers.go), path MTU verdicts (pmtu.go) and
// the policy for a kernel peer's partial checksums and super-packets
// (partial.go). It joins encap (wire formats), ring (hand-over and
// buffers), stats (counters and drop reasons), device (TUN/TAP queues),
// underlay (sockets) and netcfg (links, addresses, routes, path MTU).
//
// Devices and sockets reach it through their packages' batch seams
// (device.Device, underlay.Reader/Writer/Sender), so tests hand it fakes.
// It is platform-neutral: it does not import Prometheus (cmd/tunneld
// exports Snapshot), wireguard's tun or water (device), the socket system
// calls (underlay) or netlink (netcfg). Only cmd imports it.
package dataplane
