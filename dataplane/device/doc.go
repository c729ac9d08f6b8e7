// Package device is the overlay side of the data plane: TUN and TAP
// queues, the virtio-net header, the split of TSO/USO super-packets the
// device hands over (gsosplit.go), the TCP/UDP coalescing of what goes to
// it (tcpgro.go, tunwrite_linux.go), the partial-checksum pieces
// (checksum.go), the flow steering of a multi-queue device
// (steer_linux.go; the hash is package flowhash's) and a queue's second
// reader (share_linux.go).
//
// Its seam is Device, wireguard-go's tun.Device contract: whole batches
// read into and written from buffers at a fixed offset, headroom in
// front. Optional abilities are separate: Vnet (a queue with the virtio
// header), GatherWriter (writes packets where they lie, with per-packet
// GSO), ReadProbe (is a packet queued?).
//
// It may import encap, flowhash, ring and stats; never the data plane root, the
// underlay or the netlink side. Linux-only code is in _linux.go files;
// elsewhere Open says "not supported".
package device
