package netcfg

import (
	"errors"
	"net/netip"
)

// Link is what Configure sets on the data plane's device.
type Link struct {
	Name      string
	MTU       int
	TAP       bool    // an Ethernet device: MAC is set too
	MAC       [6]byte // TAP only
	Addresses []netip.Prefix
}

// RouteProtocol marks the routes tunneld adds (rtm_protocol; `ip route`
// shows "proto 171"). Deleting with it set makes the kernel remove only a
// route of ours: when a routing daemon (BIRD, Felix) has since replaced
// one with its own route to the same prefix, that route stays. 171 is in
// no iproute2 table and is not Felix's (80) or BIRD's (12).
const RouteProtocol = 171

// errNotSupported is what the netlink side answers where it needs Linux.
var errNotSupported = errors.New("netcfg: not supported on this platform (netlink needs Linux)")
