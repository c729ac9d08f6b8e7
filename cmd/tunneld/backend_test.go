package main

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tunnelplane/bench/topo"
)

// TestBackendAuto: with backend: auto, tunneld uses the kernel's vxlan link
// (this kernel has the module) and its own data plane for ipip (it has
// not); both forward to a userspace tunneld on the other side.
func TestBackendAuto(t *testing.T) {
	for _, tc := range []struct {
		name, encap, wantKind, wantBackend string
		macs                               bool
	}{
		{"vxlan", "  type: vxlan\n  vni: 42\n", "vxlan", "kernel", true},
		{"ipip", "  type: ipip\n", "tuntap", "userspace", false},
	} {
		for _, veth := range []bool{true, false} {
			t.Run(tc.name+"/veth-offloads-"+onOff(veth), func(t *testing.T) {
				p := topo.NewPair(t, topo.PairOptions{Offloads: veth})
				topo.NoChecksumErrors(t, p.A, p.B)
				la, lb := p.AddrA.Addr(), p.AddrB.Addr()
				oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
				macA, macB := "", ""
				if tc.macs {
					macA, macB = "02:00:00:00:01:01", "02:00:00:00:02:02"
				}
				cfgA := tunneldConfig("tun", tc.encap, "backend: auto\n", la, lb, oa, ob, macA, macB)
				cfgA = withMetrics(cfgA)
				d := startTunneld(t, p.A, "tp0", cfgA)
				startTunneld(t, p.B, "tp0", tunneldConfig("tun", tc.encap, "", lb, la, ob, oa, macB, macA))
				link, err := p.A.Handle().LinkByName("tp0")
				if err != nil {
					t.Fatal(err)
				}
				if link.Type() != tc.wantKind {
					t.Errorf("tp0 is a %q link, want %q", link.Type(), tc.wantKind)
				}
				ping(t, p.A, ob.Addr())
				ping(t, p.B, oa.Addr())
				// With the kernel backend on A, B's userspace tunneld talks to
				// the kernel's vxlan: TCP both ways, in both veth settings.
				tcpTransfer(t, p.A, p.B, ob.Addr(), 4<<20)
				tcpTransfer(t, p.B, p.A, oa.Addr(), 4<<20)
				if v := metricValue(t, scrape(t, p.A), "tunneld_backend_info", `backend="`+tc.wantBackend+`"`); v != 1 {
					t.Errorf("backend_info{backend=%q} = %v", tc.wantBackend, v)
				}
				if !strings.Contains(d.log.String(), "backend="+tc.wantBackend) {
					t.Errorf("log does not name the chosen backend %q", tc.wantBackend)
				}
				// The kernel link goes away with tunneld.
				d.stop(t)
				if _, err := p.A.Handle().LinkByName("tp0"); err == nil {
					t.Errorf("tp0 still exists after tunneld stopped")
				}
			})
		}
	}
}

// TestRouteDrivenPeers: with peers_from: routes, a kernel route through the
// tunnel device with a gateway (as BIRD/Calico program a kernel ipip
// device) makes that gateway a peer; deleting the route removes it.
func TestRouteDrivenPeers(t *testing.T) { bothOffloads(t, routeDrivenPeersCase) }

func routeDrivenPeersCase(t *testing.T, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	cfgA := "device:\n  name: tp0\n  addresses: [10.200.1.1/24]\nencap:\n  type: ipip\nunderlay:\n  local: " + la.String() +
		"\npeers_from: routes\nmetrics:\n  listen: \"\"\n"
	d := startTunneld(t, p.A, "tp0", cfgA)
	ob := netip.MustParsePrefix("10.200.2.1/24")
	cfgB := "device:\n  name: tp0\n  addresses: [10.200.2.1/24]\nencap:\n  type: ipip\nunderlay:\n  local: " + lb.String() +
		"\npeers:\n  - remote: " + la.String() + "\n    prefixes: [10.200.1.0/24]\nmetrics:\n  listen: \"\"\n"
	startTunneld(t, p.B, "tp0", cfgB)

	link, err := p.A.Handle().LinkByName("tp0")
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("10.200.2.0/24")
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: lb.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
	if err := p.A.Handle().RouteAdd(route); err != nil {
		t.Fatalf("route add: %v", err)
	}
	waitLog(t, d, "learned=1")
	ping(t, p.A, ob.Addr())

	if err := p.A.Handle().RouteDel(route); err != nil {
		t.Fatalf("route del: %v", err)
	}
	waitLog(t, d, "learned=0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := p.A.PingWith(ctx, ob.Addr(), topo.PingOptions{Count: 2, Timeout: time.Second}); err == nil {
		t.Fatalf("ping still works after the route was deleted:\n%s", out)
	}
}

// waitLog waits (bounded) until tunneld's log contains s.
func waitLog(t *testing.T, d *daemon, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("tunneld never logged %q:\n%s", s, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
