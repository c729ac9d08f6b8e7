package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnelplane/bench/topo"
)

// TestPathMTU: the underlay veths have MTU 1400 while the config assumes
// 1500, so the tunnel device keeps the larger MTU and the path is smaller,
// the situation the Linux tunnel drivers answer with ICMP. A DF packet
// that does not fit draws "fragmentation needed" / "packet too big" with
// the inner MTU that does fit; the sender's kernel learns it; a packet of
// that size then crosses; a packet without DF crosses too (the outer
// packet is fragmented). A route with a smaller MTU added later is
// followed.
func TestPathMTU(t *testing.T) {
	bothOffloads(t, pathMTUCases)
}

func pathMTUCases(t *testing.T, offloads bool) {
	for _, tc := range []struct {
		name, mode, encap string
		inner6            bool
		want              int // the inner MTU tunneld must advertise: 1400 - overhead
	}{
		{"vxlan/ipv4", "tun", "  type: vxlan\n", false, 1350},
		{"vxlan-tap/ipv4", "tap", "  type: vxlan\n", false, 1350},
		{"ipip/ipv4", "tun", "  type: ipip\n", false, 1380},
		{"gre/ipv6", "tun", "  type: gre\n", true, 1376},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{MTU: 1400, Offloads: offloads})
			topo.NoChecksumErrors(t, p.A, p.B)
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
			if tc.inner6 {
				oa, ob = netip.MustParsePrefix("fd00:200::1/64"), netip.MustParsePrefix("fd00:200::2/64")
			}
			a := startTunneld(t, p.A, "tp0", tunneldConfig(tc.mode, tc.encap, "", la, lb, oa, ob, "", ""))
			startTunneld(t, p.B, "tp0", tunneldConfig(tc.mode, tc.encap, "", lb, la, ob, oa, "", ""))
			ping(t, p.A, ob.Addr())

			run := func(args ...string) (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if tc.inner6 {
					args = append([]string{"-6"}, args...)
				}
				out, err := p.A.Command(ctx, "ping", append(args, "-n", "-W", "2", ob.Addr().String())...).CombinedOutput()
				return string(out), err
			}
			// 1. DF and too big: the ICMP error names the MTU that fits.
			out, _ := run("-c", "2", "-i", "0.3", "-M", "do", "-s", "1370")
			if !strings.Contains(out, "mtu = "+itoa(tc.want)) && !strings.Contains(out, "mtu="+itoa(tc.want)) {
				t.Fatalf("no ICMP error with mtu %d:\n%s", tc.want, out)
			}
			// 2. A packet of exactly that size crosses.
			hdr := 28
			if tc.inner6 {
				hdr = 48
			}
			if out, err := run("-c", "2", "-i", "0.3", "-M", "do", "-s", itoa(tc.want-hdr)); err != nil {
				t.Fatalf("ping of the advertised size failed: %v\n%s", err, out)
			}
			// 3. Path MTU discovery: the kernel now fragments to the
			// learned MTU before the tunnel (as tracepath would find it).
			if out, err := run("-c", "2", "-i", "0.3", "-M", "want", "-s", "1370"); err != nil {
				t.Fatalf("ping after discovery failed: %v\n%s", err, out)
			}
			// 4. IPv4 without DF: the outer packet is fragmented instead.
			if !tc.inner6 {
				if out, err := run("-c", "2", "-i", "0.3", "-M", "dont", "-s", "1370"); err != nil {
					t.Fatalf("ping without DF failed: %v\n%s", err, out)
				}
			}
			// 5. A route toward the peer with a smaller MTU, added while
			// tunneld runs, is followed: the ICMP error names the new MTU.
			if out, err := p.A.Command(context.Background(), "ip", "route", "add", lb.String()+"/32", "dev", p.IfA, "mtu", "1300").CombinedOutput(); err != nil {
				t.Fatalf("ip route add: %v\n%s", err, out)
			}
			waitLog(t, a, "routes toward peers changed")
			if out, _ := run("-c", "2", "-i", "0.3", "-M", "do", "-s", "1300"); !strings.Contains(out, "mtu = "+itoa(tc.want-100)) && !strings.Contains(out, "mtu="+itoa(tc.want-100)) {
				t.Fatalf("after the route with MTU 1300: no ICMP error with mtu %d:\n%s", tc.want-100, out)
			}
		})
	}
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
