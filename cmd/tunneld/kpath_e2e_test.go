package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnelplane/bench/topo"
)

// TestKernelPath runs tunneld with underlay.kernel_path: on against a
// tunneld without it (the user-space path on the other end) for each
// encapsulation, and against the kernel's vxlan device, in both veth
// offload settings: ping both ways, TCP both ways checked by hash, UDP.
// The metrics must show that the programs, not the user-space path,
// carried the traffic both ways.
func TestKernelPath(t *testing.T) {
	for _, tc := range []struct{ encap, peer string }{
		{"ipip", "tunneld"}, {"gre", "tunneld"}, {"vxlan", "tunneld"}, {"vxlan", "kernel"},
	} {
		t.Run(tc.encap+"/"+tc.peer, func(t *testing.T) {
			bothOffloads(t, func(t *testing.T, offloads bool) { kernelPathCase(t, tc.encap, tc.peer, offloads) })
		})
	}
}

func kernelPathCase(t *testing.T, enc, peer string, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	macA, macB := [6]byte{2, 0, 0, 0, 1, 1}, [6]byte{2, 0, 0, 0, 2, 2}
	encYAML := fmt.Sprintf("  type: %s\n", enc)
	if enc == "vxlan" {
		encYAML += "  vni: 42\n"
	}
	cfgA := tunneldConfig("tun", encYAML, "", la, lb, oa, ob, "02:00:00:00:01:01", "02:00:00:00:02:02")
	cfgA = withUnderlay(cfgA, "kernel_path: on")
	cfgA = withMetrics(cfgA)
	a := startTunneld(t, p.A, "tp0", cfgA)
	if !strings.Contains(a.log.String(), "kernel path attached") {
		t.Fatalf("tunneld did not attach the kernel path:\n%s", a.log)
	}
	if peer == "kernel" {
		if err := p.B.AddKernelVXLAN(topo.KernelVXLAN{
			Name: "vxlan0", VNI: 42, Port: 4789, Local: lb, Remote: la, MAC: macB, Addr: ob, MTU: 1450,
		}, oa.Addr(), macA); err != nil {
			t.Fatal(err)
		}
	} else {
		startTunneld(t, p.B, "tp0", tunneldConfig("tun", encYAML, "", lb, la, ob, oa, "02:00:00:00:02:02", "02:00:00:00:01:01"))
	}
	ping(t, p.A, ob.Addr())
	ping(t, p.B, oa.Addr())
	tcpTransfer(t, p.A, p.B, ob.Addr(), 32<<20)
	tcpTransfer(t, p.B, p.A, oa.Addr(), 4<<20)
	udpTransfer(t, p.A, p.B, ob.Addr(), 200)

	text := scrape(t, p.A)
	v := func(reason string) float64 {
		return metricValue(t, text, "tunneld_kernel_path_packets_total", `reason="`+reason+`"`)
	}
	sent, got, batch, noRoom := v("encap_sent"), v("decap_received"), v("decap_batch"), v("encap_no_room")
	t.Logf("kernel path: encap_sent %.0f decap_received %.0f decap_batch %.0f encap_no_peer %.0f decap_other %.0f decap_unknown_peer %.0f",
		sent, got, batch, v("encap_no_peer"), v("decap_other"), v("decap_unknown_peer"))
	// Each counts once per skb. Out: at least the 200 UDP datagrams. In:
	// the 4 MB and the ACKs of 32 MB, which a peer's offloads can pack
	// into few super-packets, so fewer; a user-space VXLAN peer sends
	// UDP GSO batches over a veth with its offloads on, the sockets' to
	// take apart, not the programs'.
	least := 50.0
	if peer == "tunneld" && enc == "vxlan" && offloads {
		got += batch
	}
	if sent < 200 || got < least {
		t.Errorf("the kernel path carried %.0f out and %.0f in; the traffic went another way", sent, got)
	}
	// The per-peer counters count what the programs carried too.
	if tx := metricValue(t, text, "tunneld_tx_packets_total", `peer="`+lb.String()+`"`); tx < sent {
		t.Errorf("tunneld_tx_packets_total for the peer %.0f, fewer than the %.0f the programs sent", tx, sent)
	}
	if rx := metricValue(t, text, "tunneld_rx_packets_total", `peer="`+lb.String()+`"`); rx < v("decap_received") {
		t.Errorf("tunneld_rx_packets_total for the peer %.0f, fewer than the %.0f the programs received", rx, v("decap_received"))
	}
	if noRoom != 0 {
		t.Errorf("%.0f packets dropped for want of room", noRoom)
	}
	if d := metricValue(t, text, "tunneld_drops_total", `reason="unknown_peer"`); d != 0 {
		t.Errorf("%.0f unknown-peer drops", d)
	}

	// A reload that gives the peer another prefix reaches the maps (after
	// the privilege drop: map writes need only the descriptors): a
	// datagram to it is encapsulated by the programs, none is left to the
	// device for want of a peer.
	reloadWith(t, a, strings.Replace(cfgA, "prefixes: [", "prefixes: [10.200.9.0/24, ", 1), 1)
	if strings.Contains(a.log.String(), "peers not all written") {
		t.Fatalf("the reload's peers did not reach the kernel path:\n%s", a.log)
	}
	if err := p.A.SendUDP(netip.MustParseAddrPort("10.200.9.1:9"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	text = scrape(t, p.A)
	if after, noPeer := v("encap_sent"), v("encap_no_peer"); after <= sent || noPeer != 0 {
		t.Errorf("after the reload: encap_sent %.0f (was %.0f), encap_no_peer %.0f", after, sent, noPeer)
	}

	// A peer routed by another device than the underlay's stays with the
	// user-space path: its prefix is not in the maps.
	for _, args := range [][]string{
		{"link", "add", "side0", "type", "veth", "peer", "name", "side1"},
		{"addr", "add", "10.98.0.1/24", "dev", "side0"},
		{"link", "set", "side0", "up"}, {"link", "set", "side1", "up"},
	} {
		if out, err := p.A.Command(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	cfg2 := strings.Replace(cfgA, "prefixes: [", "prefixes: [10.200.9.0/24, ", 1)
	cfg2 = strings.Replace(cfg2, "peers:\n", "peers:\n  - remote: 10.98.0.5\n    prefixes: [10.200.7.0/24]\n", 1)
	reloadWith(t, a, cfg2, 2)
	if !strings.Contains(a.log.String(), "peers routed by another device stay with the user-space path") {
		t.Errorf("no word on the peer behind side0:\n%s", a.log)
	}
	if err := p.A.SendUDP(netip.MustParseAddrPort("10.200.7.1:9"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	text = scrape(t, p.A)
	if noPeer := v("encap_no_peer"); noPeer != 1 {
		t.Errorf("the datagram for the peer behind side0: encap_no_peer %.0f, want 1 (left to the user-space path)", noPeer)
	}

	// Routes that change after a peer was added are followed. A route
	// that moves the side0 peer onto the underlay device puts it in the
	// maps. One with a smaller MTU toward B takes B out (the user-space
	// path answers packets too big for it), and its removal puts B back.
	routeChange := func(args ...string) {
		t.Helper()
		const said = "routes toward peers changed"
		n := strings.Count(a.log.String(), said)
		if out, err := p.A.Command(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		for deadline := time.Now().Add(5 * time.Second); strings.Count(a.log.String(), said) == n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("tunneld did not follow ip %v:\n%s", args, a.log)
			}
		}
	}
	sent = v("encap_sent")
	routeChange("route", "add", "10.98.0.5/32", "dev", p.IfA)
	if err := p.A.SendUDP(netip.MustParseAddrPort("10.200.7.1:9"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	text = scrape(t, p.A)
	if after, noPeer := v("encap_sent"), v("encap_no_peer"); after <= sent || noPeer != 1 {
		t.Errorf("the side0 peer routed by the underlay now: encap_sent %.0f (was %.0f), encap_no_peer %.0f (want 1)", after, sent, noPeer)
	}
	routeChange("route", "add", lb.String()+"/32", "dev", p.IfA, "mtu", "1300")
	noPeer := v("encap_no_peer")
	ping(t, p.A, ob.Addr())
	text = scrape(t, p.A)
	if after := v("encap_no_peer"); after <= noPeer {
		t.Errorf("B behind a 1300-byte route: encap_no_peer %.0f (was %.0f), want the pings left to the user-space path", after, noPeer)
	}
	routeChange("route", "del", lb.String()+"/32", "dev", p.IfA)
	sent, noPeer = v("encap_sent"), v("encap_no_peer")
	ping(t, p.A, ob.Addr())
	text = scrape(t, p.A)
	if after, np := v("encap_sent"), v("encap_no_peer"); after <= sent || np != noPeer {
		t.Errorf("B's route back: encap_sent %.0f (was %.0f), encap_no_peer %.0f (was %.0f)", after, sent, np, noPeer)
	}
}

// TestKernelPathAutoWithout: kernel_path: auto where the programs cannot
// carry the tunnel (IP-in-UDP) starts and forwards through the user-space
// path, saying why.
func TestKernelPathAutoWithout(t *testing.T) {
	bothOffloads(t, func(t *testing.T, offloads bool) {
		p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
		la, lb := p.AddrA.Addr(), p.AddrB.Addr()
		oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
		enc := "  type: ipudp\n"
		cfgA := withUnderlay(tunneldConfig("tun", enc, "", la, lb, oa, ob, "", ""), "kernel_path: auto")
		a := startTunneld(t, p.A, "tp0", cfgA)
		startTunneld(t, p.B, "tp0", tunneldConfig("tun", enc, "", lb, la, ob, oa, "", ""))
		ping(t, p.A, ob.Addr())
		tcpTransfer(t, p.A, p.B, ob.Addr(), 4<<20)
		if !strings.Contains(a.log.String(), "kernel path not used") {
			t.Errorf("no word on why the kernel path is not used:\n%s", a.log)
		}
	})
}
