package flannel

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// EnsureNetworkRoute points the whole flannel network at the tunnel
// device (`ip route replace 10.244.0.0/16 dev tp0`), as flannel's udp
// backend and older vxlan versions do: traffic to a subnet no node has
// leased yet goes to the data plane, which counts and drops it, instead of
// leaking to the default route. The device's peers get their own, more
// specific routes from the data plane. The route goes with the device.
func EnsureNetworkRoute(dev string, network netip.Prefix) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("flannel: network route: device %s: %w", dev, err)
	}
	dst := &net.IPNet{IP: network.Addr().AsSlice(), Mask: net.CIDRMask(network.Bits(), network.Addr().BitLen())}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("flannel: route %s dev %s: %w", network, dev, err)
	}
	return nil
}
