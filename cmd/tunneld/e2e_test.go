package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/bench/topo"
)

// e2eCase is one tunnel configuration run between two tunnelds.
type e2eCase struct {
	name    string
	mode    string // tun | tap
	encap   string // the encap: block body (indented two spaces)
	v6under bool   // IPv6 underlay
	inner6  bool   // overlay addresses are IPv6
	extra   string // extra top-level YAML
	decode  func(t *testing.T, frames []topo.Frame)
	// vethOffloads leaves the underlay veth offloads on: the UDP GSO
	// trains then cross the veth uncut and arrive as one GRO read.
	vethOffloads bool
}

func (c e2eCase) overlay() (a, b netip.Prefix) {
	if c.inner6 {
		return netip.MustParsePrefix("fd00:200::1/64"), netip.MustParsePrefix("fd00:200::2/64")
	}
	return netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
}

// withMetrics turns on the metrics listener (127.0.0.1:9109, which
// scrape reads) in a tunneldConfig.
func withMetrics(cfg string) string {
	return strings.Replace(cfg, "metrics:\n  listen: \"\"\n", "metrics:\n  listen: 127.0.0.1:9109\n", 1)
}

// withUnderlay adds one line (e.g. "kernel_path: on") to a tunneldConfig's
// underlay section.
func withUnderlay(cfg, line string) string {
	return strings.Replace(cfg, "underlay:\n", "underlay:\n  "+line+"\n", 1)
}

// tunneldConfig renders a config for one side.
func tunneldConfig(mode, encapBody, extra string, local, remote netip.Addr, own, peer netip.Prefix, ownMAC, peerMAC string) string {
	peerBits := 32
	if peer.Addr().Is6() {
		peerBits = 128
	}
	var b strings.Builder
	fmt.Fprintf(&b, "device:\n  name: tp0\n  mode: %s\n  addresses: [%s]\n", mode, own)
	if ownMAC != "" {
		fmt.Fprintf(&b, "  mac: %s\n", ownMAC)
	}
	fmt.Fprintf(&b, "encap:\n%s", encapBody)
	fmt.Fprintf(&b, "underlay:\n  local: %s\n", local)
	fmt.Fprintf(&b, "peers:\n  - remote: %s\n    prefixes: [%s/%d]\n", remote, peer.Addr(), peerBits)
	if peerMAC != "" {
		fmt.Fprintf(&b, "    mac: %s\n", peerMAC)
	}
	b.WriteString("metrics:\n  listen: \"\"\n")
	b.WriteString(extra)
	return b.String()
}

// TestTunneldPairs runs tunneld against tunneld in two namespaces for every
// encapsulation: ping, a 10 MB TCP transfer checked by hash, and UDP, both
// ways where it matters. IPIP, SIT and GRE bytes captured on the underlay
// are decoded by gopacket and their fields checked.
func TestTunneldPairs(t *testing.T) {
	cases := []e2eCase{
		{name: "tun/ipip", mode: "tun", encap: "  type: ipip\n", decode: expectIPIP},
		{name: "tun/sit", mode: "tun", encap: "  type: sit\n", inner6: true, decode: expectSIT},
		{name: "tun/gre", mode: "tun", encap: "  type: gre\n", decode: expectGRE(layers.EthernetTypeIPv4, nil)},
		{name: "tun/gre-key", mode: "tun", encap: "  type: gre\n  key: 7\n", decode: expectGRE(layers.EthernetTypeIPv4, ptr(uint32(7)))},
		{name: "tun/gre-key-inner6", mode: "tun", encap: "  type: gre\n  key: 9\n  checksum: true\n", inner6: true, decode: expectGRE(layers.EthernetTypeIPv6, ptr(uint32(9)))},
		{name: "tun/vxlan", mode: "tun", encap: "  type: vxlan\n  vni: 42\n"},
		{name: "tun/vxlan-offload-off", mode: "tun", encap: "  type: vxlan\n  vni: 42\n", extra: "offload: off\n"},
		{name: "tun/vxlan-veth-offloads-on", mode: "tun", encap: "  type: vxlan\n  vni: 42\n", vethOffloads: true},
		{name: "tun/ipudp-veth-offloads-on", mode: "tun", encap: "  type: ipudp\n", vethOffloads: true},
		{name: "tun/gre-offload-off", mode: "tun", encap: "  type: gre\n  key: 7\n", extra: "offload: off\n"},
		{name: "tap/vxlan-offload-off", mode: "tap", encap: "  type: vxlan\n  vni: 42\n", extra: "offload: off\n"},
		{name: "tun/vxlan-1queue", mode: "tun", encap: "  type: vxlan\n  vni: 42\n", extra: "queues: 1\n"},
		{name: "tun/vxlan-rings", mode: "tun", encap: "  type: vxlan\n  vni: 42\n", extra: "pipeline: rings\n"},
		{name: "tap/gre-rings", mode: "tap", encap: "  type: gre\n", extra: "pipeline: rings\n"},
		{name: "tun/ipudp", mode: "tun", encap: "  type: ipudp\n"},
		{name: "tun/vxlan-ipv6-underlay", mode: "tun", encap: "  type: vxlan\n  vni: 42\n", v6under: true},
		{name: "tap/vxlan", mode: "tap", encap: "  type: vxlan\n  vni: 42\n"},
		{name: "tap/gre-teb", mode: "tap", encap: "  type: gre\n  key: 5\n", decode: expectGRE(layers.EthernetTypeTransparentEthernetBridging, ptr(uint32(5)))},
	}
	// Every case also runs with the veth offloads on (the kernel default);
	// the "-veth-offloads-on" cases are the ones that did before.
	var both []e2eCase
	for _, tc := range cases {
		both = append(both, tc)
		if !tc.vethOffloads {
			on := tc
			on.name, on.vethOffloads = tc.name+"/veth-offloads-on", true
			both = append(both, on)
		}
	}
	for _, tc := range both {
		t.Run(tc.name, func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{IPv6: tc.v6under, Offloads: tc.vethOffloads})
			topo.NoChecksumErrors(t, p.A, p.B)
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			if tc.v6under {
				la, lb = p.AddrA6.Addr(), p.AddrB6.Addr()
			}
			oa, ob := tc.overlay()
			startTunneld(t, p.A, "tp0", tunneldConfig(tc.mode, tc.encap, tc.extra, la, lb, oa, ob, "", ""))
			startTunneld(t, p.B, "tp0", tunneldConfig(tc.mode, tc.encap, tc.extra, lb, la, ob, oa, "", ""))

			var capt *topo.Capture
			if tc.decode != nil {
				var err error
				capt, err = p.B.StartCapture(context.Background(), p.IfB, 200)
				if err != nil {
					t.Fatal(err)
				}
			}
			ping(t, p.A, ob.Addr())
			ping(t, p.B, oa.Addr())
			if capt != nil {
				time.Sleep(50 * time.Millisecond)
				tc.decode(t, capt.StopFrames())
			}
			tcpTransfer(t, p.A, p.B, ob.Addr(), 10<<20)
			tcpTransfer(t, p.B, p.A, oa.Addr(), 1<<20)
			udpTransfer(t, p.A, p.B, ob.Addr(), 200)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// decodeIncoming returns the frames received on the underlay that gopacket
// decodes as IPv4 carrying proto.
func decodeIncoming(t *testing.T, frames []topo.Frame, proto layers.IPProtocol) []gopacket.Packet {
	t.Helper()
	var out []gopacket.Packet
	for _, f := range frames {
		if f.Outgoing {
			continue
		}
		pkt := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
		if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && ip.Protocol == proto {
			out = append(out, pkt)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no IPv4 protocol %d packets captured on the underlay (%d frames)", proto, len(frames))
	}
	return out
}

func outerChecks(t *testing.T, pkt gopacket.Packet) {
	t.Helper()
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.SrcIP.String() != "10.99.0.1" || ip.DstIP.String() != "10.99.0.2" {
		t.Fatalf("outer addresses %s -> %s", ip.SrcIP, ip.DstIP)
	}
	if ip.TTL != 64 {
		t.Errorf("outer TTL %d, want 64", ip.TTL)
	}
}

func expectIPIP(t *testing.T, frames []topo.Frame) {
	for _, pkt := range decodeIncoming(t, frames, layers.IPProtocolIPv4) {
		outerChecks(t, pkt)
		// gopacket decodes the payload of protocol 4 as a second IPv4 layer.
		var inner *layers.IPv4
		for _, l := range pkt.Layers() {
			if ip, ok := l.(*layers.IPv4); ok {
				inner = ip
			}
		}
		if inner == nil || inner.SrcIP.String() != "10.200.0.1" || inner.DstIP.String() != "10.200.0.2" {
			t.Fatalf("IPIP inner: %v", pkt)
		}
		if pkt.Layer(layers.LayerTypeICMPv4) == nil {
			t.Fatalf("IPIP inner is not the ICMP echo: %v", pkt)
		}
		return
	}
}

func expectSIT(t *testing.T, frames []topo.Frame) {
	for _, pkt := range decodeIncoming(t, frames, layers.IPProtocolIPv6) {
		outerChecks(t, pkt)
		inner, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ok || inner.SrcIP.String() != "fd00:200::1" || inner.DstIP.String() != "fd00:200::2" {
			t.Fatalf("SIT inner: %v", pkt)
		}
		if pkt.Layer(layers.LayerTypeICMPv6) == nil {
			t.Fatalf("SIT inner is not ICMPv6: %v", pkt)
		}
		return
	}
}

func expectGRE(proto layers.EthernetType, key *uint32) func(*testing.T, []topo.Frame) {
	return func(t *testing.T, frames []topo.Frame) {
		for _, pkt := range decodeIncoming(t, frames, layers.IPProtocolGRE) {
			outerChecks(t, pkt)
			gre, ok := pkt.Layer(layers.LayerTypeGRE).(*layers.GRE)
			if !ok {
				t.Fatalf("no GRE layer: %v", pkt)
			}
			if gre.Protocol != proto {
				continue // e.g. an ARP in a TEB tunnel has the same type; others are skipped
			}
			if gre.Version != 0 || gre.RoutingPresent {
				t.Fatalf("GRE version %d routing %v", gre.Version, gre.RoutingPresent)
			}
			if (key != nil) != gre.KeyPresent || (key != nil && gre.Key != *key) {
				t.Fatalf("GRE key present=%v key=%d, want %v", gre.KeyPresent, gre.Key, key)
			}
			return
		}
		t.Fatalf("no GRE packet with protocol %v", proto)
	}
}

// TestKernelVXLANInterop runs tunneld in namespace A against the Linux
// kernel's own vxlan device in namespace B, programmed as flannel programs a
// node: ping, a 10 MB TCP transfer checked by hash and UDP in both
// directions, in TUN and TAP mode, with VNI 42 on port 4789 and with
// flannel's defaults (VNI 1, port 8472), with the underlay veth offloads
// on (the kernel's default: B sends partial checksums and uncut GSO
// super-packets) and off, and with tunneld's device offloads auto and
// off. Neither kernel may count a checksum error.
func TestKernelVXLANInterop(t *testing.T) {
	for _, mode := range []string{"tun", "tap"} {
		for _, vp := range []struct{ vni, port int }{{42, 4789}, {1, 8472}} {
			for _, veth := range []bool{true, false} {
				for _, offload := range []string{"auto", "off"} {
					name := fmt.Sprintf("%s/vni%d-port%d/veth-offloads-%s/offload-%s", mode, vp.vni, vp.port, onOff(veth), offload)
					t.Run(name, func(t *testing.T) { kernelVXLANCase(t, mode, vp.vni, vp.port, veth, offload) })
				}
			}
		}
	}
}

func kernelVXLANCase(t *testing.T, mode string, vni, port int, veth bool, offload string) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: veth})
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	macA, macB := [6]byte{2, 0, 0, 0, 1, 1}, [6]byte{2, 0, 0, 0, 2, 2}
	if err := p.B.AddKernelVXLAN(topo.KernelVXLAN{
		Name: "vxlan0", VNI: uint32(vni), Port: port,
		Local: lb, Remote: la, MAC: macB, Addr: ob, MTU: 1450,
	}, oa.Addr(), macA); err != nil {
		t.Fatal(err)
	}
	topo.NoChecksumErrors(t, p.A, p.B)
	encapBody := fmt.Sprintf("  type: vxlan\n  vni: %d\n  port: %d\n", vni, port)
	startTunneld(t, p.A, "tp0", tunneldConfig(mode, encapBody, "offload: "+offload+"\n", la, lb, oa, ob, "02:00:00:00:01:01", "02:00:00:00:02:02"))
	ping(t, p.A, ob.Addr())
	ping(t, p.B, oa.Addr())
	tcpTransfer(t, p.A, p.B, ob.Addr(), 10<<20)
	tcpTransfer(t, p.B, p.A, oa.Addr(), 10<<20)
	udpTransfer(t, p.A, p.B, ob.Addr(), 200)
	udpTransfer(t, p.B, p.A, oa.Addr(), 200)
	udpGSOTransfer(t, p.B, p.A, oa.Addr(), 1000, 20, 20)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
