// Package flowhash owns the data plane's one flow hash: which queue a
// packet's flow belongs to. The kernel computes it with an eBPF program
// this package builds and loads; it runs in two places, and the data
// plane computes the same value in Go:
//
//   - as the TUN/TAP steering program (device), on packets the kernel
//     hands to the device: a flow always leaves through one queue;
//   - as the SO_REUSEPORT program of the underlay's receiving sockets
//     (underlay), on the inner packet behind the tunnel header, hashing
//     the flow's answer (ports swapped): a flow arrives at the queue where
//     the kernel will steer what answers it, so the underlay reader that
//     writes a flow to the device finds the answers on its own queue;
//   - Queue, in Go, where the data plane needs to know that queue
//     (dataplane/devreader.go).
//
// The program uses only classic packet loads (LD_ABS/LD_IND) of the
// socket-filter type, so it needs no helper and no GPL license. It may
// import nothing of the data plane.
package flowhash
