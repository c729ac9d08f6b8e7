package netcfg

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"tunnelplane/bench/topo"
)

// TestHandleRoutesVia: through a Handle on a socket opened in another
// namespace (as the kernel backend uses it), Configure brings an existing
// link up and its undo sets it down again; SyncRoutesVia adds gateway and
// on-link routes marked as ours, replaces a gateway in place, leaves a
// route someone else has for the same prefix and removes only its own.
func TestHandleRoutesVia(t *testing.T) {
	ns := topo.NewNS(t, "netcfgvia")
	nl, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	h := On(nl)
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nv0"}, PeerName: "nv1"}); err != nil {
		t.Fatal(err)
	}
	if LinkExists("nv0") || !h.LinkExists("nv0") {
		t.Fatal("LinkExists: nv0 must be in the Handle's namespace only")
	}
	undo, err := h.Configure(Link{Name: "nv0", MTU: 1400, Addresses: []netip.Prefix{netip.MustParsePrefix("10.66.0.1/24")}}, true)
	if err != nil {
		t.Fatal(err)
	}
	link, err := nl.LinkByName("nv0")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1400 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("nv0 mtu %d flags %v", link.Attrs().MTU, link.Attrs().Flags)
	}

	// A route someone else has (the kernel's default protocol, "boot").
	_, other, _ := net.ParseCIDR("10.67.9.0/24")
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: other, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	pfx := netip.MustParsePrefix
	gw1, gw2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	want := []Route{{Dst: pfx("10.67.2.0/24"), Via: gw1}, {Dst: pfx("10.67.9.0/24")}, {Dst: pfx("10.67.1.1/32")}}
	had, err := h.SyncRoutesVia("nv0", want, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := []Route{{Dst: pfx("10.67.1.1/32")}, {Dst: pfx("10.67.2.0/24"), Via: gw1}}; !slices.Equal(had, w) {
		t.Fatalf("first sync: %v, want %v (10.67.9.0/24 is not ours)", had, w)
	}
	if again, err := h.SyncRoutesVia("nv0", []Route{{Dst: pfx("10.67.2.0/24"), Via: gw1}, {Dst: pfx("10.67.1.1/32")}}, had); err != nil || &again[0] != &had[0] {
		t.Fatalf("a sync without change must return had itself: %v, %v", again, err)
	}
	had, err = h.SyncRoutesVia("nv0", []Route{{Dst: pfx("10.67.2.0/24"), Via: gw2}}, had)
	if err != nil || !slices.Equal(had, []Route{{Dst: pfx("10.67.2.0/24"), Via: gw2}}) {
		t.Fatalf("second sync: %v, %v", had, err)
	}
	routes := func() map[string]string { // dst -> gateway, protocol
		t.Helper()
		rs, err := nl.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range rs {
			if r.Dst != nil && r.Dst.IP[0] == 10 && r.Dst.IP[1] == 67 {
				m[r.Dst.String()] = r.Gw.String() + " " + r.Protocol.String()
			}
		}
		return m
	}
	got := routes()
	if got["10.67.2.0/24"] != "192.0.2.2 171" || got["10.67.9.0/24"] != "<nil> boot" || len(got) != 2 {
		t.Errorf("routes after the gateway change: %v", got)
	}
	if had, err = h.SyncRoutesVia("nv0", nil, had); err != nil || len(had) != 0 {
		t.Fatalf("last sync: %v, %v", had, err)
	}
	if got := routes(); len(got) != 1 || got["10.67.9.0/24"] == "" {
		t.Errorf("routes after removing ours: %v, want only the other's", got)
	}

	undo()
	if link, err = nl.LinkByName("nv0"); err != nil {
		t.Fatal(err)
	}
	if as, _ := nl.AddrList(link, netlink.FAMILY_V4); len(as) != 0 || link.Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("after undo: addresses %v, flags %v; want none and down, as before", as, link.Attrs().Flags)
	}
}
