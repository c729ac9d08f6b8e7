// Package bpfpath is tunneld's in-kernel fast path: two tc programs (tcx)
// that do the encapsulation and decapsulation the kernel's ipip, gre and
// vxlan modules would do, on kernels that have eBPF but not those modules.
//
// The encap program sits on the overlay device's egress (tunneld's TUN),
// puts the outer headers in front of each IPv4 packet with
// bpf_skb_adjust_room (which marks a TSO super-packet for the kernel's own
// built-in tunnel segmentation, so it stays whole) and redirects it to the
// underlay device through the kernel's FIB and neighbour tables
// (bpf_redirect_neigh). The decap program sits on the underlay device's
// ingress, matches the tunnel's packets by their outer headers, strips
// them and redirects the inner packet to the overlay device's ingress.
//
// Neither copies a byte or wakes tunneld. What they do not take (other
// protocols, fragments, options, unknown peers) goes on as before, to the
// TUN and to tunneld's sockets: the user-space data plane stays the slow
// path and the fallback, and tunneld's control plane (config, leases,
// routes) stays in charge.
//
// The programs are written as instructions (cilium/ebpf's asm) rather than
// compiled from C, so building tunneld needs no clang and the constants of
// the tunnel are plain immediates. They assume a little-endian host.
package bpfpath
