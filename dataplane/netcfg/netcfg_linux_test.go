package netcfg

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"tunnelplane/bench/topo"
)

// TestLinkRoutesPathMTU: in a fresh namespace, Configure sets MTU and an
// address on an existing link (undo takes the address away again),
// SyncRoutes adds only what is missing and removes only its own routes,
// and PathMTUs sees the link's MTU.
func TestLinkRoutesPathMTU(t *testing.T) {
	ns := topo.NewNS(t, "netcfg")
	err := ns.Do(func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nc0"}, PeerName: "nc1"}); err != nil {
			return err
		}
		if !LinkExists("nc0") || LinkExists("nc9") {
			t.Error("LinkExists")
		}
		addr := netip.MustParsePrefix("10.77.0.1/24")
		undo, err := Configure(Link{Name: "nc0", MTU: 1400, Addresses: []netip.Prefix{addr}}, true)
		if err != nil {
			return err
		}
		link, err := netlink.LinkByName("nc0")
		if err != nil {
			return err
		}
		if link.Attrs().MTU != 1400 || link.Attrs().Flags&1 == 0 {
			t.Errorf("link mtu %d flags %v", link.Attrs().MTU, link.Attrs().Flags)
		}
		a, b := netip.MustParsePrefix("10.88.0.0/24"), netip.MustParsePrefix("10.88.1.0/24")
		had, err := SyncRoutes("nc0", []netip.Prefix{b, a, b}, nil)
		if err != nil || !slices.Equal(had, []netip.Prefix{a, b}) {
			t.Fatalf("first sync: %v, %v", had, err)
		}
		had, err = SyncRoutes("nc0", []netip.Prefix{b}, had)
		if err != nil || !slices.Equal(had, []netip.Prefix{b}) {
			t.Fatalf("second sync: %v, %v", had, err)
		}
		rs, err := netlink.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var ours []string
		for _, r := range rs {
			if r.Protocol == RouteProtocol {
				ours = append(ours, r.Dst.String())
			}
		}
		if !slices.Equal(ours, []string{"10.88.1.0/24"}) {
			t.Errorf("routes proto %d: %v", RouteProtocol, ours)
		}
		pm := NewPathMTUs()
		defer pm.Close()
		if got := pm.Lookup(netip.MustParseAddr("10.77.0.9"), 1500); got != 1400 {
			t.Errorf("path MTU %d, want the link's 1400", got)
		}
		if got := pm.Lookup(netip.MustParseAddr("10.77.0.9"), 1300); got != 1300 {
			t.Errorf("path MTU %d, want the limit 1300", got)
		}
		undo()
		as, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(as) != 0 {
			t.Errorf("addresses after undo: %v", as)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
