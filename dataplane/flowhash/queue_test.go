package flowhash

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// steerPacket builds an IPv4 or IPv6 packet from src:sp to dst:dp with
// gopacket (proto TCP, UDP or ICMP), behind l2 bytes of Ethernet header.
func steerPacket(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, sp, dp uint16, l2 bool) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	if l2 {
		et := layers.EthernetTypeIPv4
		if src.Is6() {
			et = layers.EthernetTypeIPv6
		}
		ls = append(ls, &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: et})
	}
	var nl gopacket.NetworkLayer
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	}
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), ACK: true, Window: 100}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
	default:
		ls = append(ls, gopacket.Payload([]byte{8, 0, 0, 0, 0, 1, 0, 1}))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestQueueReply: the queue Queue names for a packet's answer (reply) is
// the one it names for the answer itself (addresses and ports swapped), for TCP,
// UDP and ICMP over IPv4 and IPv6, TUN and TAP; and the flows spread.
func TestQueueReply(t *testing.T) {
	pairs := [][2]netip.Addr{
		{netip.MustParseAddr("10.200.0.1"), netip.MustParseAddr("10.200.1.7")},
		{netip.MustParseAddr("fd00:200::1"), netip.MustParseAddr("fd00:200:1::7")},
	}
	for _, l2 := range []bool{false, true} {
		off := 0
		if l2 {
			off = 14
		}
		for _, ab := range pairs {
			for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4} {
				used := map[int]int{}
				for sp := uint16(40000); sp < 40064; sp += 2 {
					req := steerPacket(t, ab[0], ab[1], proto, sp, 5201, l2)
					ans := steerPacket(t, ab[1], ab[0], proto, 5201, sp, l2)
					for _, n := range []int{2, 3, 4, 8} {
						if got, want := Queue(req, off, n, true), Queue(ans, off, n, false); got != want {
							t.Fatalf("%v %v port %d, %d queues: Queue(reply) %d, the answer's queue %d", ab, proto, sp, n, got, want)
						}
					}
					used[Queue(req, off, 4, false)]++
				}
				if proto != layers.IPProtocolICMPv4 && len(used) < 3 {
					t.Errorf("%v %v: 32 flows on %d of 4 queues: %v", ab, proto, len(used), used)
				}
			}
		}
	}
	if q := Queue([]byte{0x45}, 0, 4, true); q != 0 {
		t.Errorf("truncated packet: queue %d, want 0 (the program's out-of-bounds load returns 0)", q)
	}
	p := steerPacket(t, pairs[0][0], pairs[0][1], layers.IPProtocolTCP, 40000, 5201, false)
	if n := testing.AllocsPerRun(100, func() { Queue(p, 0, 4, true) }); n != 0 {
		t.Errorf("Queue allocates %v times per call", n)
	}
}

// FuzzQueue: any bytes at any offset give a queue in range, and
// never a panic.
func FuzzQueue(f *testing.F) {
	f.Add(steerPacket(f, netip.MustParseAddr("10.200.0.1"), netip.MustParseAddr("10.200.1.7"), layers.IPProtocolTCP, 1, 2, false), 0, 4)
	f.Add(steerPacket(f, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), layers.IPProtocolUDP, 1, 2, true), 14, 3)
	f.Add([]byte{0x4f, 0, 0}, 0, 2)
	f.Fuzz(func(t *testing.T, p []byte, l2, n int) {
		if l2 < 0 || l2 > 64 || n < 1 || n > 256 {
			return
		}
		for _, q := range []int{Queue(p, l2, n, false), Queue(p, l2, n, true)} {
			if q < 0 || q >= n {
				t.Fatalf("queue %d of %d", q, n)
			}
		}
	})
}
