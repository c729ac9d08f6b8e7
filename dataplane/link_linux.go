package dataplane

// The netlink side of the data plane: the device's link, addresses and
// routes. (To move into dataplane/netcfg with the path-MTU lookups.)

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// openDevice opens the configured device with n queues (device.Open) and
// brings it up with its addresses and MTU. The returned undo removes what
// this call added to a device that existed before; a device it created
// goes away when its queues close.
func openDevice(cfg *config.Config, n int) ([]device.Device, func(), error) {
	_, existedErr := netlink.LinkByName(cfg.Device.Name)
	existed := existedErr == nil
	devs, err := device.Open(device.Config{
		Name:     cfg.Device.Name,
		TAP:      cfg.Device.Mode == config.ModeTAP,
		MTU:      cfg.Device.MTU,
		Offload:  cfg.Offload != "off",
		Fallback: cfg.Offload == "auto",
	}, n)
	if err != nil {
		return nil, nil, err
	}
	undo, err := configureLink(cfg, existed)
	if err != nil {
		for _, d := range devs {
			d.Close()
		}
		return nil, nil, err
	}
	return devs, undo, nil
}

// configureLink sets MTU, MAC (TAP), addresses and up through netlink.
func configureLink(cfg *config.Config, existed bool) (func(), error) {
	link, err := netlink.LinkByName(cfg.Device.Name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", cfg.Device.Name, err)
	}
	var added []*netlink.Addr
	undo := func() {
		if !existed {
			return // the kernel removes a non-persistent device, its addresses and routes on close
		}
		for _, a := range added {
			netlink.AddrDel(link, a)
		}
	}
	if err := netlink.LinkSetMTU(link, cfg.Device.MTU); err != nil {
		return nil, fmt.Errorf("set mtu %d on %s: %w", cfg.Device.MTU, cfg.Device.Name, err)
	}
	if cfg.Device.Mode == config.ModeTAP {
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(cfg.Device.MAC[:])); err != nil {
			return nil, fmt.Errorf("set mac on %s: %w", cfg.Device.Name, err)
		}
	}
	// Addresses someone else put on the device (Felix keeps its tunnel
	// address on tunl0) are never touched: tunneld adds its own, and at exit
	// removes only those that were not there before it came.
	present := map[netip.Prefix]bool{}
	if existed {
		if as, err := netlink.AddrList(link, netlink.FAMILY_ALL); err == nil {
			for _, a := range as {
				if pa, ok := netip.AddrFromSlice(a.IP); ok {
					ones, _ := a.Mask.Size()
					present[netip.PrefixFrom(pa.Unmap(), ones)] = true
				}
			}
		}
	}
	for _, p := range cfg.Device.Addresses {
		if present[p] {
			continue
		}
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			undo()
			return nil, fmt.Errorf("add address %s to %s: %w", p, cfg.Device.Name, err)
		}
		added = append(added, a)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		undo()
		return nil, fmt.Errorf("set %s up: %w", cfg.Device.Name, err)
	}
	return undo, nil
}

// RouteProtocol marks the routes tunneld adds (rtm_protocol; `ip route`
// shows "proto 171"). Deleting with it set makes the kernel remove only a
// route of ours: when a routing daemon (BIRD, Felix) has since replaced
// one with its own route to the same prefix, that route stays. 171 is in
// no iproute2 table and is not Felix's (80) or BIRD's (12).
const RouteProtocol = 171

// syncRoutes points the peers' prefixes that the device's own subnets do
// not already cover at the device, and removes the routes it added before
// for prefixes no peer has any more. had and the result are the routes in
// place, sorted (comparePrefix).
//
// Only the difference to had is written: a route it added before is not
// written again (a reload that changes one peer costs one or two netlink
// messages, not one per prefix), and a route someone else already has for
// the same prefix is left as it is (EEXIST) and not counted as ours, so
// tunneld never overwrites or removes a route it did not add. The sets are
// sorted slices rather than maps: at 100,000 prefixes a map per reload was
// the largest piece of garbage a reload left.
func syncRoutes(cfg *config.Config, peers []*Peer, had []netip.Prefix, owned map[netip.Prefix]bool) ([]netip.Prefix, error) {
	want := make([]netip.Prefix, 0, len(had)+8)
	for _, p := range peers {
		for _, pfx := range p.Prefixes {
			pfx = pfx.Masked()
			if !coveredByDevice(cfg, pfx) && !owned[pfx] {
				want = append(want, pfx)
			}
		}
	}
	slices.SortFunc(want, comparePrefix)
	want = slices.Compact(want)
	var add, del []netip.Prefix
	i, j := 0, 0
	for i < len(want) || j < len(had) {
		switch c := cmpNext(want, had, i, j); {
		case c < 0:
			add = append(add, want[i])
			i++
		case c > 0:
			del = append(del, had[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return had, nil
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return had, err
	}
	defer nl.Close()
	link, err := nl.LinkByName(cfg.Device.Name)
	if err != nil {
		return had, err
	}
	route := func(pfx netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(pfx), Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol}
	}
	var errs error
	var notAdded, kept []netip.Prefix // sorted, like add and del
	for _, pfx := range add {
		if err := nl.RouteAdd(route(pfx)); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				errs = errors.Join(errs, fmt.Errorf("route %s dev %s: %w", pfx, cfg.Device.Name, err))
			}
			notAdded = append(notAdded, pfx)
		}
	}
	for _, pfx := range del {
		if err := nl.RouteDel(route(pfx)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = errors.Join(errs, fmt.Errorf("remove route %s dev %s: %w", pfx, cfg.Device.Name, err))
			kept = append(kept, pfx)
		}
	}
	// now = want - notAdded + kept
	now := make([]netip.Prefix, 0, len(want)+len(kept))
	k := 0
	for _, pfx := range want {
		if k < len(notAdded) && notAdded[k] == pfx {
			k++
			continue
		}
		now = append(now, pfx)
	}
	if len(kept) > 0 {
		now = append(now, kept...)
		slices.SortFunc(now, comparePrefix)
	}
	return now, errs
}

// cmpNext compares want[i] with had[j], an exhausted side counting as
// larger.
func cmpNext(want, had []netip.Prefix, i, j int) int {
	switch {
	case i == len(want):
		return 1
	case j == len(had):
		return -1
	}
	return comparePrefix(want[i], had[j])
}

// comparePrefix orders prefixes by address, then length; it is quicker
// than netip.Addr.Compare on the 100,000 prefixes of a large table.
func comparePrefix(a, b netip.Prefix) int {
	x, y := a.Addr().As16(), b.Addr().As16()
	if c := cmp.Compare(binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(x[8:]), binary.BigEndian.Uint64(y[8:])); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Addr().BitLen(), b.Addr().BitLen()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func coveredByDevice(cfg *config.Config, pfx netip.Prefix) bool {
	for _, a := range cfg.Device.Addresses {
		if a.Bits() <= pfx.Bits() && a.Masked().Contains(pfx.Addr()) {
			return true
		}
	}
	return false
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
