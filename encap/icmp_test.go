package encap

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestPutTooBig(t *testing.T) {
	inner4 := make([]byte, 1400)
	PushIPv4(inner4, IPv4Len, len(inner4), &IPv4Header{Src: netip.MustParseAddr("10.200.0.1"), Dst: netip.MustParseAddr("10.200.0.2"), Protocol: ProtoICMP, TTL: 64, DF: true})
	inner6 := make([]byte, 1400)
	PushIPv6(inner6, IPv6Len, len(inner6), &IPv6Header{Src: netip.MustParseAddr("fd00:200::1"), Dst: netip.MustParseAddr("fd00:200::2"), NextHeader: ProtoUDP, HopLimit: 64})
	tests := []struct {
		name  string
		orig  []byte
		src   string
		mtu   int
		check func(t *testing.T, pkt gopacket.Packet)
	}{
		{"ipv4 frag needed", inner4, "10.200.0.1", 1350, func(t *testing.T, pkt gopacket.Packet) {
			ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip.DstIP.String() != "10.200.0.1" || ip.Protocol != layers.IPProtocolICMPv4 || len(pkt.Data()) != 576 {
				t.Fatalf("outer %v -> %v proto %v len %d", ip.SrcIP, ip.DstIP, ip.Protocol, len(pkt.Data()))
			}
			icmp := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || icmp.Seq != 1350 {
				t.Fatalf("icmp %v mtu %d", icmp.TypeCode, icmp.Seq)
			}
			if Checksum(pkt.Data()[IPv4Len:]) != 0 || Checksum(pkt.Data()[:IPv4Len]) != 0 {
				t.Fatal("bad checksum")
			}
		}},
		{"ipv6 packet too big", inner6, "fd00:200::1", 1330, func(t *testing.T, pkt gopacket.Packet) {
			ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if ip.DstIP.String() != "fd00:200::1" || len(pkt.Data()) != 1280 {
				t.Fatalf("outer dst %v len %d", ip.DstIP, len(pkt.Data()))
			}
			icmp := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			if icmp.TypeCode != layers.CreateICMPv6TypeCode(2, 0) {
				t.Fatalf("icmpv6 %v", icmp.TypeCode)
			}
			if mtu := uint32(icmp.Payload[0])<<24 | uint32(icmp.Payload[1])<<16 | uint32(icmp.Payload[2])<<8 | uint32(icmp.Payload[3]); mtu != 1330 {
				t.Fatalf("mtu %d", mtu)
			}
			src, dst := netip.MustParseAddr("fd00:200::1"), netip.MustParseAddr("fd00:200::1")
			m := pkt.Data()[IPv6Len:]
			if finishChecksum(onesSum(m, pseudoHeaderSum(src, dst, ProtoICMPv6, len(m)))) != 0 {
				t.Fatal("bad ICMPv6 checksum")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, 1500)
			n := PutTooBig(dst, tc.orig, netip.MustParseAddr(tc.src), tc.mtu)
			if n == 0 {
				t.Fatal("nothing written")
			}
			first := layers.LayerTypeIPv4
			if tc.orig[0]>>4 == 6 {
				first = layers.LayerTypeIPv6
			}
			tc.check(t, gopacket.NewPacket(dst[:n], first, gopacket.Default))
		})
	}
	if PutTooBig(make([]byte, 10), inner4, netip.MustParseAddr("10.200.0.1"), 1350) != 0 {
		t.Fatal("wrote into a too small buffer")
	}
	if PutTooBig(make([]byte, 600), []byte{0x45}, netip.MustParseAddr("10.200.0.1"), 1350) != 0 {
		t.Fatal("answered a truncated packet")
	}
	if !MustNotFragment(inner4, 0, len(inner4)) || !MustNotFragment(inner6, 0, len(inner6)) {
		t.Fatal("DF / IPv6 not detected")
	}
	dst := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() { PutTooBig(dst, inner4, netip.MustParseAddr("10.200.0.1"), 1350) }); n != 0 {
		t.Fatalf("PutTooBig allocates %v", n)
	}
}
