// Package dataplane is the forwarder's composition and pipeline: the peer
// table and FDB (table.go), the per-encapsulation codec (tunnel.go), the
// egress and ingress reader loops and their batch state (pipeline.go,
// batch.go), the writers (writers.go), path MTU verdicts (pmtu.go) and
// the policy for a kernel peer's partial checksums and super-packets
// (partial.go). It joins encap (wire formats), ring (hand-over and
// buffers), stats (counters and drop reasons), device (TUN/TAP queues)
// and underlay (sockets).
//
// Devices and sockets reach it through their packages' batch seams
// (device.Device, underlay.Reader/Writer/Sender), so tests hand it fakes.
// It does not import Prometheus (cmd/tunneld exports Snapshot), wireguard's
// tun or water (device), or the socket system calls (underlay). Still here
// and bound for dataplane/netcfg: the device's link, addresses and routes
// (link_linux.go) and the path-MTU lookups (pmtu.go, setpeers.go) over
// netlink.
package dataplane
