package encap

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	outer4Src = netip.MustParseAddr("192.0.2.1")
	outer4Dst = netip.MustParseAddr("198.51.100.2")
	outer6Src = netip.MustParseAddr("2001:db8::1")
	outer6Dst = netip.MustParseAddr("2001:db8::2")

	innerMACDst = MAC{0x02, 0x42, 0x0a, 0x00, 0x00, 0x02}
	innerMACSrc = MAC{0x02, 0x42, 0x0a, 0x00, 0x00, 0x01}
)

// headroom is what the tests leave in front of every payload: more than any
// stack we push, so that Push preconditions always hold.
const headroom = MaxOverhead + GREMaxLen + IPv4Len

// withHeadroom copies payload into a fresh buffer behind headroom bytes and
// returns the buffer and the payload's offsets.
func withHeadroom(payload []byte) (b []byte, off, end int) {
	b = make([]byte, headroom+len(payload))
	copy(b[headroom:], payload)
	return b, headroom, len(b)
}

// serialize builds a packet with gopacket, fixing lengths and computing
// checksums, so that it is an independent reference for our bytes.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("gopacket serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// refChecksum is a deliberately naive RFC 1071 checksum, 16 bits at a
// time, to check the optimized one against.
func refChecksum(data []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(data); i += 2 {
		sum += uint32(data[i])<<8 | uint32(data[i+1])
	}
	if len(data)%2 == 1 {
		sum += uint32(data[len(data)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// innerIPv4 is an IPv4/UDP packet with an odd-length payload, so that
// checksums over it exercise the odd trailing byte. It is long enough
// that an Ethernet frame around it needs no padding to 60 bytes.
func innerIPv4(tb testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Id: 7, Flags: layers.IPv4DontFragment,
		Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 244, 1, 5}, DstIP: net.IP{10, 244, 2, 9}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 12345}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, udp, gopacket.Payload("hello, tunnel: an odd-length payload"))
}

// innerIPv6 is an IPv6/TCP packet.
func innerIPv6(tb testing.TB) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, TrafficClass: 0x20, FlowLabel: 0x12345,
		SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	tcp := &layers.TCP{SrcPort: 443, DstPort: 55555, Seq: 1, Ack: 2, ACK: true, PSH: true, Window: 512, DataOffset: 5}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, tcp, gopacket.Payload("0123456789abcdef"))
}

// innerFrame is an Ethernet frame carrying inner, as VXLAN and GRE-TEB
// tunnels do.
func innerFrame(tb testing.TB, inner []byte, etherType layers.EthernetType) []byte {
	eth := &layers.Ethernet{DstMAC: net.HardwareAddr(innerMACDst[:]), SrcMAC: net.HardwareAddr(innerMACSrc[:]), EthernetType: etherType}
	return serialize(tb, eth, gopacket.Payload(inner))
}

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// outer4 returns our outer IPv4 header fields and gopacket's equivalent.
func outer4(proto uint8) (*IPv4Header, *layers.IPv4) {
	h := &IPv4Header{Src: outer4Src, Dst: outer4Dst, Protocol: proto, TTL: 64, TOS: 0xb8, ID: 0x1234, DF: true}
	g := &layers.IPv4{Version: 4, IHL: 5, TOS: 0xb8, Id: 0x1234, Flags: layers.IPv4DontFragment, TTL: 64,
		Protocol: layers.IPProtocol(proto), SrcIP: ipOf(outer4Src), DstIP: ipOf(outer4Dst)}
	return h, g
}

// outer6 returns our outer IPv6 header fields and gopacket's equivalent.
func outer6(next uint8) (*IPv6Header, *layers.IPv6) {
	h := &IPv6Header{Src: outer6Src, Dst: outer6Dst, NextHeader: next, HopLimit: 64, TrafficClass: 0xb8, FlowLabel: 0xabcde}
	g := &layers.IPv6{Version: 6, TrafficClass: 0xb8, FlowLabel: 0xabcde, NextHeader: layers.IPProtocol(next), HopLimit: 64,
		SrcIP: ipOf(outer6Src), DstIP: ipOf(outer6Dst)}
	return h, g
}

// checkOuter4 compares gopacket's decoding of our outer IPv4 header with
// the fields we pushed, and verifies the header checksum independently.
func checkOuter4(t *testing.T, g *layers.IPv4, h *IPv4Header, totalLen int) {
	t.Helper()
	if g.Version != 4 || g.IHL != 5 || g.TOS != h.TOS || int(g.Length) != totalLen || g.Id != h.ID ||
		g.Flags != layers.IPv4DontFragment || g.FragOffset != 0 || g.TTL != h.TTL || uint8(g.Protocol) != h.Protocol ||
		!g.SrcIP.Equal(ipOf(h.Src)) || !g.DstIP.Equal(ipOf(h.Dst)) || len(g.Options) != 0 {
		t.Errorf("outer IPv4 decoded by gopacket = %+v, pushed %+v (total %d)", g, h, totalLen)
	}
	if c := refChecksum(g.Contents); c != 0 {
		t.Errorf("outer IPv4 checksum 0x%04x does not verify (residue 0x%04x)", g.Checksum, c)
	}
}

func checkOuter6(t *testing.T, g *layers.IPv6, h *IPv6Header, payLen int) {
	t.Helper()
	if g.Version != 6 || g.TrafficClass != h.TrafficClass || g.FlowLabel != h.FlowLabel || int(g.Length) != payLen ||
		uint8(g.NextHeader) != h.NextHeader || g.HopLimit != h.HopLimit ||
		!g.SrcIP.Equal(ipOf(h.Src)) || !g.DstIP.Equal(ipOf(h.Dst)) {
		t.Errorf("outer IPv6 decoded by gopacket = %+v, pushed %+v (payload %d)", g, h, payLen)
	}
}
