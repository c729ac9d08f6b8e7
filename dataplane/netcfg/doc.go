// Package netcfg is the data plane's netlink side: the device's link
// (MTU, MAC, up), its addresses, the routes through it, and the path-MTU
// lookups toward peers. tunneld only ever adds what it needs and removes
// only what it added (addresses present before it came, routes of other
// daemons, stay).
//
// It may import the standard library and netlink; never the data plane
// root, the device or the underlay side. Linux-only code is in _linux.go
// files; elsewhere it says "not supported". (The kernel backend,
// dataplane/kernel, still has netlink code of its own.)
package netcfg
