// Package netcfg is tunneld's netlink side, for the userspace data plane
// and the kernel backend alike: a link's MTU, MAC, addresses and up/down
// state, the routes through it, and the path-MTU lookups toward peers.
// tunneld only ever adds what it needs and removes only what it added
// (addresses present before it came, routes of other daemons, stay).
//
// The package functions work in the calling thread's namespace; a Handle
// (On; Linux only) does the same work through a netlink socket of the
// caller's, in the namespace that socket was opened in (the kernel
// backend's). The kernel backend keeps only what is particular to its
// links: creating them, and their neighbour and FDB entries.
//
// It may import the standard library and netlink; never the data plane
// root, the device or the underlay side, nor the kernel backend.
// Linux-only code is in _linux.go files; elsewhere it says "not
// supported".
package netcfg
