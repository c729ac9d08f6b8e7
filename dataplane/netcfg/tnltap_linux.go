package netcfg

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The netlink side of the UDP-tunnel GSO TAP (underlay.TunnelTAP): the
// device whose address is the underlay's, the tc redirect from the TAP to
// it, and the next hop's MAC for each peer.

// UnderlayLink is the device that holds the local underlay address.
type UnderlayLink struct {
	Index int
	Name  string
	MAC   [6]byte
	MTU   int
}

// LinkOfAddr finds the device local is an address of.
func LinkOfAddr(local netip.Addr) (UnderlayLink, error) {
	fam := netlink.FAMILY_V4
	if local.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(nil, fam)
	if err != nil {
		return UnderlayLink{}, fmt.Errorf("netcfg: addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != local {
			continue
		}
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			return UnderlayLink{}, fmt.Errorf("netcfg: link of %s: %w", local, err)
		}
		u := UnderlayLink{Index: a.LinkIndex, Name: l.Attrs().Name, MTU: l.Attrs().MTU}
		if len(l.Attrs().HardwareAddr) != 6 {
			return UnderlayLink{}, fmt.Errorf("netcfg: %s (holding %s) is not an Ethernet device", u.Name, local)
		}
		copy(u.MAC[:], l.Attrs().HardwareAddr)
		return u, nil
	}
	return UnderlayLink{}, fmt.Errorf("netcfg: no device has the address %s", local)
}

// RedirectTAP readies the TAP tap as a send-only device whose frames
// leave by the device with index to: no IPv6 address and no ARP on it (so
// that the kernel sends nothing into it), up, and on its ingress a clsact
// qdisc with one match-all u32 filter whose action is mirred egress
// redirect to the device. It needs sch_ingress (clsact), cls_u32 and
// act_mirred; the error names what the kernel refused.
func RedirectTAP(tap string, to int) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("netcfg: %s: %w", tap, err)
	}
	// Before up: no IPv6 link-local address, so no router solicitations
	// into the TAP (what the kernel sends there only fills the TAP's
	// queue, which nobody reads; best effort: a kernel without IPv6 has
	// nothing to turn off).
	netlink.LinkSetIP6AddrGenMode(l, 1) // IN6_ADDR_GEN_MODE_NONE
	if err := netlink.LinkSetARPOff(l); err != nil {
		return fmt.Errorf("netcfg: %s: ARP off: %w", tap, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("netcfg: %s: up: %w", tap, err)
	}
	idx := l.Attrs().Index
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := netlink.QdiscAdd(q); err != nil {
		return fmt.Errorf("netcfg: %s: clsact qdisc (sch_ingress): %w", tap, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.HANDLE_MIN_INGRESS, Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to,
		}},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("netcfg: %s: u32 filter with mirred redirect (cls_u32, act_mirred): %w", tap, err)
	}
	return nil
}

// RoutesVia sets ok[i] when the kernel's route toward remotes[i] leaves by
// the device with index via (len(ok) >= len(remotes)).
func RoutesVia(remotes []netip.Addr, via int, ok []bool) error {
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netcfg: netlink: %w", err)
	}
	defer nl.Close()
	for i, r := range remotes {
		rs, err := nl.RouteGet(r.AsSlice())
		ok[i] = err == nil && len(rs) > 0 && rs[0].LinkIndex == via
	}
	return nil
}

// NextHops resolves, for each remote, the MAC of the next hop toward it
// when the route leaves by the device with index via and the kernel's
// neighbour table has a usable entry for the hop (reachable, stale,
// delay, probe, permanent): macs[i], ok[i]. Anything else (another
// device, no entry yet, a failed one) leaves ok[i] false; the caller
// sends through the socket then, which makes the kernel resolve it. One
// neighbour dump serves all remotes.
func NextHops(remotes []netip.Addr, via int, macs [][6]byte, ok []bool) error {
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netcfg: netlink: %w", err)
	}
	defer nl.Close()
	neighs, err := nl.NeighList(via, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("netcfg: neighbours: %w", err)
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
	table := make(map[netip.Addr][6]byte, len(neighs))
	for _, n := range neighs {
		ip, okIP := netip.AddrFromSlice(n.IP)
		if !okIP || n.State&usable == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		var m [6]byte
		copy(m[:], n.HardwareAddr)
		table[ip.Unmap()] = m
	}
	for i, r := range remotes {
		ok[i] = false
		rs, err := nl.RouteGet(r.AsSlice())
		if err != nil || len(rs) == 0 || rs[0].LinkIndex != via {
			continue
		}
		hop := r
		if gw, okGW := netip.AddrFromSlice(rs[0].Gw); okGW && !gw.IsUnspecified() {
			hop = gw.Unmap()
		}
		macs[i], ok[i] = table[hop]
	}
	return nil
}
