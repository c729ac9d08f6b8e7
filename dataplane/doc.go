// Package dataplane is the forwarder: devices (TUN/TAP), underlay sockets,
// the peer table, the egress and ingress pipelines and their drop counters.
// It is the composition root that joins encap (wire formats) and ring
// (hand-over and buffers).
package dataplane
