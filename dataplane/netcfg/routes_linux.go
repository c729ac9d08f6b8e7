package netcfg

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
	return here.SyncRoutes(dev, want, had)
}

// SyncRoutes is the package's SyncRoutes, through h.
func (h *Handle) SyncRoutes(dev string, want, had []netip.Prefix) ([]netip.Prefix, error) {
	slices.SortFunc(want, comparePrefix)
	return syncRoutes(h, dev, slices.Compact(want), had, func(p netip.Prefix) Route { return Route{Dst: p} })
}

// SyncRoutesVia is SyncRoutes for routes that may have a gateway (the
// kernel backend's). had and the result are sorted by Dst; want is sorted
// here and should have one route per Dst (of several, one is kept). A
// route of ours whose gateway changes is replaced in place, so the prefix
// never goes without a route.
func (h *Handle) SyncRoutesVia(dev string, want, had []Route) ([]Route, error) {
	byDst := func(a, b Route) int { return comparePrefix(a.Dst, b.Dst) }
	slices.SortFunc(want, byDst)
	want = slices.CompactFunc(want, func(a, b Route) bool { return a.Dst == b.Dst })
	return syncRoutes(h, dev, want, had, func(r Route) Route { return r })
}

// syncRoutes writes the difference between want and had, both sorted by
// destination with one route per destination, and returns the routes in
// place, in the same order; route tells what an element stands for.
//
// It walks the two lists once and writes as it goes, so the result comes
// out sorted. Until the first difference no socket is opened and nothing
// is allocated: a reload that changes no route returns had itself.
func syncRoutes[R any](h *Handle, dev string, want, had []R, route func(R) Route) ([]R, error) {
	var (
		nl    *netlink.Handle // opened at the first difference
		index int
		now   []R
		errs  error
	)
	i, j := 0, 0
	for i < len(want) || j < len(had) {
		var w, o Route
		c := 0
		switch {
		case i == len(want):
			o, c = route(had[j]), 1
		case j == len(had):
			w, c = route(want[i]), -1
		default:
			w, o = route(want[i]), route(had[j])
			c = comparePrefix(w.Dst, o.Dst)
		}
		if c == 0 && w.Via == o.Via {
			if nl != nil {
				now = append(now, want[i])
			}
			i, j = i+1, j+1
			continue
		}
		if nl == nil {
			s, release, err := h.batch()
			if err != nil {
				return had, err
			}
			defer release()
			link, err := s.LinkByName(dev)
			if err != nil {
				return had, err
			}
			nl, index = s, link.Attrs().Index
			now = append(make([]R, 0, len(want)), had[:j]...)
		}
		switch {
		case c < 0: // new: a route someone else has is left (EEXIST) and not ours
			if err := nl.RouteAdd(w.netlinkRoute(index)); err == nil {
				now = append(now, want[i])
			} else if !errors.Is(err, unix.EEXIST) {
				errs = errors.Join(errs, fmt.Errorf("route %s dev %s: %w", w.Dst, dev, err))
			}
			i++
		case c > 0: // gone: deleting with our protocol removes only a route of ours
			if err := nl.RouteDel(o.netlinkRoute(index)); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = errors.Join(errs, fmt.Errorf("remove route %s dev %s: %w", o.Dst, dev, err))
				now = append(now, had[j])
			}
			j++
		default: // ours, with another gateway: replaced in place
			if err := nl.RouteReplace(w.netlinkRoute(index)); err == nil {
				now = append(now, want[i])
			} else {
				errs = errors.Join(errs, fmt.Errorf("route %s via %s dev %s: %w", w.Dst, w.Via, dev, err))
				now = append(now, had[j])
			}
			i, j = i+1, j+1
		}
	}
	if nl == nil {
		return had, nil
	}
	return now, errs
}

// netlinkRoute is r through the link of that index, marked as ours.
func (r Route) netlinkRoute(index int) *netlink.Route {
	nr := &netlink.Route{LinkIndex: index, Dst: prefixToIPNet(r.Dst), Protocol: RouteProtocol}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
		nr.Flags = int(netlink.FLAG_ONLINK)
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr
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
