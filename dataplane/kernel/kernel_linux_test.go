package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/netcfg"
)

// TestSupported compares the probe with what iproute2 can create in a
// scratch namespace (on the machine this was written on: vxlan yes; ipip,
// sit, gre, gretap no).
func TestSupported(t *testing.T) {
	ns := topo.NewNS(t, "kprobe")
	for _, tt := range []struct {
		typ  config.EncapType
		mode config.Mode
		args []string
	}{
		{config.EncapVXLAN, config.ModeTUN, []string{"type", "vxlan", "id", "1", "dstport", "4789"}},
		{config.EncapIPIP, config.ModeTUN, []string{"type", "ipip", "local", "127.0.0.1", "remote", "127.0.0.1"}},
		{config.EncapSIT, config.ModeTUN, []string{"type", "sit", "local", "127.0.0.1", "remote", "127.0.0.1"}},
		{config.EncapGRE, config.ModeTUN, []string{"type", "gre", "local", "127.0.0.1", "remote", "127.0.0.1"}},
		{config.EncapGRE, config.ModeTAP, []string{"type", "gretap", "local", "127.0.0.1", "remote", "127.0.0.1"}},
	} {
		kind := linkKind(tt.typ, tt.mode)
		t.Run(kind, func(t *testing.T) {
			name := "x" + kind
			out, err := ns.Command(context.Background(), "ip", append([]string{"link", "add", name}, tt.args...)...).CombinedOutput()
			want := err == nil
			got := Supported(tt.typ, tt.mode)
			if got != want {
				t.Errorf("Supported(%s, %s) = %v; `ip link add %s` says %v (%s)", tt.typ, tt.mode, got, kind, want, out)
			}
			if got2 := Supported(tt.typ, tt.mode); got2 != got {
				t.Errorf("second call %v, first %v", got2, got)
			}
			t.Logf("%s supported: %v", kind, got)
		})
	}
	if Supported(config.EncapIPUDP, config.ModeTUN) {
		t.Error("Supported(ipudp) = true")
	}
	// No probe link is left behind.
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if len(l.Attrs().Name) > 7 && l.Attrs().Name[:7] == "tpprobe" {
			t.Errorf("probe link %s left behind", l.Attrs().Name)
		}
	}
}

// vxlanConfig is one side of a kernel vxlan tunnel between the Pair's
// namespaces: own address 10.200.0.N/24, the other side's /32 and the
// other side's extra /24 (10.200.M.0/24, M = the other's N + 10), routed
// via its first address onlink as flannel does.
func vxlanConfig(t *testing.T, self, other int) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`device:
  name: vx0
  addresses: [10.200.0.%d/24, 10.200.%d.1/32]
encap:
  preset: flannel-vxlan
  vni: 42
  port: 4789
underlay:
  local: 10.99.0.%d
backend: kernel
peers:
  - remote: 10.99.0.%d
    prefixes: [10.200.0.%d/32, 10.200.%d.0/24]
`, self, self+10, self, other, other, other+10)
	c, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ping(ns *topo.NS, addr string) error {
	_, err := ns.PingWith(context.Background(), netip.MustParseAddr(addr), topo.PingOptions{Count: 2, Interval: 100 * time.Millisecond, Timeout: time.Second})
	return err
}

func TestApplyVXLAN(t *testing.T) {
	if !Supported(config.EncapVXLAN, config.ModeTUN) {
		t.Skip("this kernel has no vxlan link type")
	}
	p := topo.NewPair(t, topo.PairOptions{})
	ca, cb := vxlanConfig(t, 1, 2), vxlanConfig(t, 2, 1)
	if use, err := Use(ca); !use || err != nil {
		t.Fatalf("Use(backend: kernel) = %v, %v", use, err)
	}
	la, err := ApplyWithOptions(ca, Options{Namespace: netns.NsHandle(p.A.Fd())})
	if err != nil {
		t.Fatalf("Apply in A: %v", err)
	}
	t.Cleanup(func() { la.Close() })
	lb, err := ApplyWithOptions(cb, Options{Namespace: netns.NsHandle(p.B.Fd())})
	if err != nil {
		t.Fatalf("Apply in B: %v", err)
	}
	t.Cleanup(func() { lb.Close() })

	// The link as configured.
	l, err := p.A.Handle().LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("vx0 is %T", l)
	}
	if vx.VxlanId != 42 || vx.Port != 4789 || vx.Learning || vx.MTU != 1450 || !vx.SrcAddr.Equal(net.IPv4(10, 99, 0, 1)) ||
		vx.HardwareAddr.String() != "02:00:0a:63:00:01" || vx.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("vx0: vni %d port %d learning %v mtu %d local %s mac %s flags %v",
			vx.VxlanId, vx.Port, vx.Learning, vx.MTU, vx.SrcAddr, vx.HardwareAddr, vx.Attrs().Flags)
	}

	// The routes are netcfg's, marked as tunneld's: the /24 via its first
	// address onlink, the /32 on the link.
	rs, err := p.A.Handle().RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{}
	for _, r := range rs {
		if r.Protocol == netcfg.RouteProtocol {
			ours[r.Dst.String()] = r.Gw.String()
		}
	}
	if len(ours) != 2 || ours["10.200.12.0/24"] != "10.200.12.0" || ours["10.200.0.2/32"] != "<nil>" {
		t.Errorf("routes of proto %d on vx0: %v", netcfg.RouteProtocol, ours)
	}

	for _, tt := range []struct {
		ns   *topo.NS
		addr string
	}{{p.A, "10.200.0.2"}, {p.B, "10.200.0.1"}, {p.A, "10.200.12.1"}, {p.B, "10.200.11.1"}} {
		if err := ping(tt.ns, tt.addr); err != nil {
			t.Fatalf("ping %s across the kernel vxlan: %v", tt.addr, err)
		}
	}

	// Without the peer, A no longer reaches B; its entries are gone.
	if err := la.SetPeers(nil); err != nil {
		t.Fatalf("SetPeers(nil): %v", err)
	}
	for _, addr := range []string{"10.200.12.1", "10.200.0.2"} {
		if err := ping(p.A, addr); err == nil {
			t.Fatalf("ping %s succeeded after SetPeers(nil)", addr)
		}
	}
	h := p.A.Handle()
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Gw != nil || r.Dst != nil && (r.Dst.String() == "10.200.0.2/32" || r.Dst.String() == "10.200.12.0/24") {
			t.Errorf("route %s left after SetPeers(nil)", r)
		}
	}
	fdb, err := h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdb {
		if n.IP != nil {
			t.Errorf("fdb entry %s dst %s left after SetPeers(nil)", n.HardwareAddr, n.IP)
		}
	}
	neighs, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.State == netlink.NUD_PERMANENT {
			t.Errorf("permanent neighbour %s left after SetPeers(nil)", n.IP)
		}
	}

	// Back again, then idempotent.
	for range 2 {
		if err := la.SetPeers(ca.Peers); err != nil {
			t.Fatalf("SetPeers(peers): %v", err)
		}
	}
	if err := ping(p.A, "10.200.12.1"); err != nil {
		t.Fatalf("ping after restoring the peer: %v", err)
	}

	// A second Apply of the same name does not touch the existing link.
	if l2, err := ApplyWithOptions(ca, Options{Namespace: netns.NsHandle(p.A.Fd())}); err == nil {
		l2.Close()
		t.Fatal("second Apply of vx0 succeeded")
	}
	if _, err := h.LinkByName("vx0"); err != nil {
		t.Fatalf("failed second Apply removed vx0: %v", err)
	}

	// Close removes the link.
	if err := la.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := h.LinkByName("vx0"); err == nil {
		t.Fatal("vx0 still exists after Close")
	}
	if err := la.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := la.SetPeers(ca.Peers); err == nil {
		t.Fatal("SetPeers after Close succeeded")
	}
}

// TestApplyUnsupported: Apply of a type the kernel lacks fails cleanly and
// leaves nothing behind.
func TestApplyUnsupported(t *testing.T) {
	if Supported(config.EncapIPIP, config.ModeTUN) {
		t.Skip("this kernel has ipip; nothing to check")
	}
	ns := topo.NewNS(t, "kunsup")
	c, err := config.Parse("t.yaml", []byte("encap: {preset: calico-ipip}\nunderlay: {local: 10.99.0.1}\nbackend: kernel\n"))
	if err != nil {
		t.Fatal(err)
	}
	if use, err := Use(c); use || !errors.Is(err, ErrUnsupported) {
		t.Errorf("Use(backend: kernel, ipip) = %v, %v; want ErrUnsupported", use, err)
	}
	c.Backend = config.BackendAuto
	if use, err := Use(c); use || err != nil {
		t.Errorf("Use(backend: auto, ipip) = %v, %v; want userspace", use, err)
	}
	if l, err := ApplyWithOptions(c, Options{Namespace: netns.NsHandle(ns.Fd())}); err == nil {
		l.Close()
		t.Fatal("Apply ipip succeeded")
	} else {
		t.Logf("Apply ipip: %v", err)
	}
	if _, err := ns.Handle().LinkByName("tunl0"); err == nil {
		t.Fatal("tunl0 exists after the failed Apply")
	}
}

// TestApplyVXLANTap: in tap mode the link is plain L2 with a flood entry
// per peer; ARP crosses it, so addresses on the links reach each other.
func TestApplyVXLANTap(t *testing.T) {
	if !Supported(config.EncapVXLAN, config.ModeTAP) {
		t.Skip("this kernel has no vxlan link type")
	}
	p := topo.NewPair(t, topo.PairOptions{})
	for _, side := range []struct {
		ns          *topo.NS
		self, other int
	}{{p.A, 1, 2}, {p.B, 2, 1}} {
		c, err := config.Parse("t.yaml", []byte(fmt.Sprintf(
			"device: {name: vxl0, mode: tap, addresses: [10.200.0.%d/24]}\nencap: {type: vxlan, vni: 7}\nunderlay: {local: 10.99.0.%d}\npeers: [{remote: 10.99.0.%d}]\n",
			side.self, side.self, side.other)))
		if err != nil {
			t.Fatal(err)
		}
		l, err := ApplyWithOptions(c, Options{Namespace: netns.NsHandle(side.ns.Fd())})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		t.Cleanup(func() { l.Close() })
	}
	if err := ping(p.A, "10.200.0.2"); err != nil {
		t.Fatalf("ping across kernel vxlan in tap mode: %v", err)
	}
}
