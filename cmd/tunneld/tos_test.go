package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/bench/topo"
)

// TestOuterHeaderFields: the outer TOS follows the inner packet with
// tos: inherit (the default), or the configured value; the outer TTL
// follows ttl. Checked on frames captured on the underlay and decoded by
// gopacket.
func TestOuterHeaderFields(t *testing.T) {
	bothOffloads(t, outerHeaderCases)
}

func outerHeaderCases(t *testing.T, offloads bool) {
	for _, tc := range []struct {
		name, encap      string
		wantTOS, wantTTL uint8
	}{
		{"gre/inherit", "  type: gre\n", 0xb8, 64},
		{"vxlan/inherit", "  type: vxlan\n", 0xb8, 64},
		{"vxlan/tos-32", "  type: vxlan\n  tos: 32\n", 32, 64},
		{"ipip/ttl-20", "  type: ipip\n  ttl: 20\n", 0xb8, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
			startTunneld(t, p.A, "tp0", tunneldConfig("tun", tc.encap, "", la, lb, oa, ob, "", ""))
			startTunneld(t, p.B, "tp0", tunneldConfig("tun", tc.encap, "", lb, la, ob, oa, "", ""))
			ping(t, p.A, ob.Addr())
			capt, err := p.B.StartCapture(context.Background(), p.IfB, 100)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if out, err := p.A.Command(ctx, "ping", "-n", "-c", "3", "-i", "0.2", "-Q", "0xb8", ob.Addr().String()).CombinedOutput(); err != nil {
				t.Fatalf("ping -Q 0xb8: %v\n%s", err, out)
			}
			time.Sleep(50 * time.Millisecond)
			found := false
			for _, f := range capt.StopFrames() {
				if f.Outgoing {
					continue
				}
				pkt := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
				ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !ok || ip.SrcIP.String() != la.String() {
					continue
				}
				// The inner echo request: the last IPv4 layer gopacket finds.
				var inner *layers.IPv4
				for _, l := range pkt.Layers() {
					if v, ok := l.(*layers.IPv4); ok && v != ip {
						inner = v
					}
				}
				if inner == nil || inner.TOS != 0xb8 {
					continue
				}
				found = true
				if ip.TOS != tc.wantTOS || ip.TTL != tc.wantTTL {
					t.Fatalf("outer TOS %#x TTL %d, want TOS %#x TTL %d", ip.TOS, ip.TTL, tc.wantTOS, tc.wantTTL)
				}
			}
			if !found {
				t.Fatal("no encapsulated echo request with inner TOS 0xb8 captured")
			}
		})
	}
}
