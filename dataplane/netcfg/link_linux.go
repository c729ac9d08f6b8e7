package netcfg

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkExists reports whether a link of that name is there.
func LinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// Configure sets the device's MTU, MAC (TAP), addresses and brings it up.
// existed says whether the device was there before tunneld opened it: the
// returned undo then removes the addresses Configure added (a device
// tunneld created goes away with its addresses and routes on close).
func Configure(l Link, existed bool) (func(), error) {
	link, err := netlink.LinkByName(l.Name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", l.Name, err)
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
	if err := netlink.LinkSetMTU(link, l.MTU); err != nil {
		return nil, fmt.Errorf("set mtu %d on %s: %w", l.MTU, l.Name, err)
	}
	if l.TAP {
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(l.MAC[:])); err != nil {
			return nil, fmt.Errorf("set mac on %s: %w", l.Name, err)
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
	for _, p := range l.Addresses {
		if present[p] {
			continue
		}
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			undo()
			return nil, fmt.Errorf("add address %s to %s: %w", p, l.Name, err)
		}
		added = append(added, a)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		undo()
		return nil, fmt.Errorf("set %s up: %w", l.Name, err)
	}
	return undo, nil
}

// SyncRoutes points the prefixes want at device dev, and removes the
// routes it added before (had) for prefixes not in want. had and the
// result are the routes in place, sorted (comparePrefix).
//
// Only the difference to had is written: a route it added before is not
// written again (a reload that changes one peer costs one or two netlink
// messages, not one per prefix), and a route someone else already has for
// the same prefix is left as it is (EEXIST) and not counted as ours, so
// tunneld never overwrites or removes a route it did not add. The sets are
// sorted slices rather than maps: at 100,000 prefixes a map per reload was
// the largest piece of garbage a reload left. want is sorted here; it may
// hold duplicates.
func SyncRoutes(dev string, want, had []netip.Prefix) ([]netip.Prefix, error) {
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
	link, err := nl.LinkByName(dev)
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
				errs = errors.Join(errs, fmt.Errorf("route %s dev %s: %w", pfx, dev, err))
			}
			notAdded = append(notAdded, pfx)
		}
	}
	for _, pfx := range del {
		if err := nl.RouteDel(route(pfx)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = errors.Join(errs, fmt.Errorf("remove route %s dev %s: %w", pfx, dev, err))
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

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
