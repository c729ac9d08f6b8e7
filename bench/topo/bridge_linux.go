package topo

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// Bridge is a switched underlay for three or more nodes: a namespace that
// holds a Linux bridge, to which other namespaces attach through veth
// pairs. The bridge itself may carry an address (a service such as etcd
// listening in the bridge namespace, reachable from every node).
type Bridge struct {
	NS    *NS
	Name  string // the bridge link in NS
	ports int
}

// NewBridge creates a namespace with a bridge named "br0", up, and
// removes it (with every port) at cleanup. addr, if valid, is put on the
// bridge; it must lie in the underlay range.
func NewBridge(tb testing.TB, label string, addr netip.Prefix) *Bridge {
	tb.Helper()
	b := &Bridge{NS: NewNS(tb, label), Name: "br0"}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Name}}
	if err := b.NS.handle.LinkAdd(br); err != nil {
		tb.Fatalf("%s: bridge %s: %v", b.NS.Name, b.Name, err)
	}
	if err := b.NS.LinkUp(b.Name); err != nil {
		tb.Fatal(err)
	}
	if addr.IsValid() {
		if !Allowed(addr.Addr()) {
			tb.Fatalf("topo: bridge address %s is outside the project's ranges", addr)
		}
		if err := b.NS.AddAddr(b.Name, addr); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// Attach connects n to the bridge with a veth pair whose end in n is
// ifname, with address addr (in the underlay range), both ends up, and
// waits until the link is ready. It returns the name of the bridge's
// port.
func (b *Bridge) Attach(tb testing.TB, n *NS, ifname string, addr netip.Prefix) string {
	tb.Helper()
	if !Allowed(addr.Addr()) {
		tb.Fatalf("topo: address %s is outside the project's ranges", addr)
	}
	b.ports++
	port := fmt.Sprintf("port%d", b.ports)
	if err := ConnectVeth(b.NS, n, port, ifname, 0); err != nil {
		tb.Fatal(err)
	}
	pl, err := b.NS.handle.LinkByName(port)
	if err == nil {
		var bl netlink.Link
		if bl, err = b.NS.handle.LinkByName(b.Name); err == nil {
			err = b.NS.handle.LinkSetMaster(pl, bl)
		}
	}
	if err != nil {
		tb.Fatalf("%s: %s into %s: %v", b.NS.Name, port, b.Name, err)
	}
	for _, e := range []error{b.NS.LinkUp(port), n.AddAddr(ifname, addr), n.LinkUp(ifname), n.LinkUp("lo")} {
		if e != nil {
			tb.Fatal(e)
		}
	}
	if err := n.waitReady(ifname, time.Now().Add(10*time.Second)); err != nil {
		tb.Fatal(err)
	}
	return port
}
