package netcfg

import (
	"errors"
	"net/netip"
)

// Link is what Configure sets on the data plane's device.
type Link struct {
	Name      string
	MTU       int
	TAP       bool    // an Ethernet device (TAP, vxlan, gretap): MAC is set too
	MAC       [6]byte // TAP only
	Addresses []netip.Prefix
}

// Route is a route through a link to Dst: directly on the link (scope
// link) when Via is the zero Addr, else via the gateway Via, onlink (the
// gateway need not be on a prefix of the link: the kernel backend routes
// flannel's vxlan prefixes via their first address and Calico's ipip
// prefixes via the peer's underlay address).
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// RouteProtocol marks the routes tunneld adds (rtm_protocol; `ip route`
// shows "proto 171"). Deleting with it set makes the kernel remove only a
// route of ours: when a routing daemon (BIRD, Felix) has since replaced
// one with its own route to the same prefix, that route stays. 171 is in
// no iproute2 table and is not Felix's (80) or BIRD's (12).
const RouteProtocol = 171

// errNotSupported is what the netlink side answers where it needs Linux.
var errNotSupported = errors.New("netcfg: not supported on this platform (netlink needs Linux)")
