package topo

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddKernelVXLAN creates a kernel vxlan device in the namespace exactly as
// flannel programs a node:
//
//	ip link add NAME type vxlan id VNI dstport PORT local LOCAL nolearning [dev DEV]
//	ip link set NAME address MAC up; ip addr add ADDR dev NAME
//	bridge fdb append 00:00:00:00:00:00 dev NAME dst REMOTE self permanent
//	ip neigh replace PEER lladdr PEERMAC dev NAME nud permanent
//	ip route replace PEER dev NAME            (only if ADDR's subnet does not cover PEER)
//	ip route replace P via PEER dev NAME onlink   (for each of v.PeerRoutes)
//
// An invalid peerOverlay skips the neighbour entry and routes.
func (n *NS) AddKernelVXLAN(v KernelVXLAN, peerOverlay netip.Addr, peerMAC [6]byte) error {
	if v.Name == "" || len(v.Name) > unix.IFNAMSIZ-1 {
		return fmt.Errorf("vxlan: bad device name %q", v.Name)
	}
	if v.VNI >= 1<<24 {
		return fmt.Errorf("vxlan: VNI %d out of range", v.VNI)
	}
	if !v.Local.IsValid() || !v.Addr.IsValid() {
		return fmt.Errorf("vxlan %s: Local and Addr are required", v.Name)
	}
	port := v.Port
	if port == 0 {
		port = 4789
	}
	dev := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: v.Name, MTU: v.MTU, HardwareAddr: net.HardwareAddr(v.MAC[:])},
		VxlanId:   int(v.VNI),
		SrcAddr:   net.IP(v.Local.AsSlice()),
		Port:      port,
		Learning:  false,
		UDPCSum:   v.UDPCsum,
	}
	if v.Dev != "" {
		under, err := n.handle.LinkByName(v.Dev)
		if err != nil {
			return fmt.Errorf("vxlan %s: underlay %s: %w", v.Name, v.Dev, err)
		}
		dev.VtepDevIndex = under.Attrs().Index
	}
	h := n.handle
	wrap := func(what string, err error) error {
		return fmt.Errorf("%s: vxlan %s: %s: %w", n.Name, v.Name, what, err)
	}
	if err := h.LinkAdd(dev); err != nil {
		return wrap("create", err)
	}
	link, err := h.LinkByName(v.Name)
	if err != nil {
		return wrap("lookup", err)
	}
	idx := link.Attrs().Index
	// The MAC given at creation is honoured by the kernel, but set it again
	// explicitly in case a udev-like agent or MACAddressPolicy interferes.
	if err := h.LinkSetHardwareAddr(link, dev.HardwareAddr); err != nil {
		return wrap("set MAC", err)
	}
	if err := n.AddAddr(v.Name, v.Addr); err != nil {
		return err
	}
	if err := h.LinkSetUp(link); err != nil {
		return wrap("up", err)
	}
	if v.Remote.IsValid() {
		fdb := &netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(v.Remote.AsSlice()),
			HardwareAddr: net.HardwareAddr(make([]byte, 6)),
		}
		if err := h.NeighAppend(fdb); err != nil {
			return wrap("fdb 00:00:00:00:00:00 dst "+v.Remote.String(), err)
		}
	}
	if !peerOverlay.IsValid() {
		return nil
	}
	family := netlink.FAMILY_V4
	if peerOverlay.Is6() {
		family = netlink.FAMILY_V6
	}
	nb := &netlink.Neigh{
		LinkIndex:    idx,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(peerOverlay.AsSlice()),
		HardwareAddr: net.HardwareAddr(peerMAC[:]),
	}
	if err := h.NeighSet(nb); err != nil {
		return wrap("neigh "+peerOverlay.String(), err)
	}
	if !v.Addr.Masked().Contains(peerOverlay) {
		r := &netlink.Route{
			LinkIndex: idx,
			Dst:       prefixToIPNet(netip.PrefixFrom(peerOverlay, peerOverlay.BitLen())),
			Scope:     netlink.SCOPE_LINK,
		}
		if err := h.RouteReplace(r); err != nil {
			return wrap("route "+peerOverlay.String(), err)
		}
	}
	for _, pfx := range v.PeerRoutes {
		r := &netlink.Route{
			LinkIndex: idx,
			Dst:       prefixToIPNet(pfx.Masked()),
			Gw:        net.IP(peerOverlay.AsSlice()),
			Flags:     int(netlink.FLAG_ONLINK),
		}
		if err := h.RouteReplace(r); err != nil {
			return wrap("route "+pfx.String(), err)
		}
	}
	return nil
}
