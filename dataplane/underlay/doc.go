// Package underlay is the data plane's side toward the physical network:
// the UDP and raw IP sockets the tunnel runs over, batched I/O with
// recvmmsg/sendmmsg, UDP GSO/GRO control messages and their fallbacks,
// and the send-only sockets kept out of the netpoller (sendsock_linux.go).
//
// Its seam is whole batches of Message: Reader.ReadBatch and
// Writer.WriteBatch, in the spirit of wireguard-go's conn.Bind; a Sender
// gives each sending goroutine a Writer with scratch state of its own.
// Open builds the sockets of all device queues at once.
//
// It may import encap, flowhash, ring and stats; never the data plane root, the
// device side or the netlink side. Linux-only code is in _linux.go files;
// elsewhere Open says "not supported".
package underlay
