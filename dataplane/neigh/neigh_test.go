package neigh

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	ourMAC  = MAC{0x02, 0x42, 0x0a, 0x00, 0x00, 0x01}
	peerMAC = MAC{0x02, 0x42, 0x0a, 0x00, 0x00, 0x02}
	bcast   = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	our4   = netip.MustParseAddr("10.244.1.0")
	peer4  = netip.MustParseAddr("10.244.2.0")
	other4 = netip.MustParseAddr("10.244.1.7")

	our6   = netip.MustParseAddr("fd00:244:1::1")
	ourLL  = netip.MustParseAddr("fe80::42:aff:fe00:1")
	peer6  = netip.MustParseAddr("fd00:244:2::1")
	other6 = netip.MustParseAddr("fd00:244:1::7")
)

func newTestResponder() *Responder {
	return New(ourMAC, []netip.Addr{our4, our6, ourLL})
}

func hw(m MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }
func ip(a netip.Addr) net.IP    { return net.IP(a.AsSlice()) }

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// solicitedNode returns the solicited-node multicast address of a.
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	s := [16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
	return netip.AddrFrom16(s)
}

// refChecksum is a deliberately naive ICMPv6 checksum, written independently
// of checksum.go: it builds the pseudo-header as bytes and sums byte pairs.
// It returns the value the checksum field must hold for msg (whose own
// checksum field is treated as zero).
func refChecksum(src, dst netip.Addr, msg []byte) uint16 {
	var ph []byte
	s, d := src.As16(), dst.As16()
	ph = append(ph, s[:]...)
	ph = append(ph, d[:]...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(msg)))
	ph = append(ph, 0, 0, 0, 58)
	m := append([]byte(nil), msg...)
	m[2], m[3] = 0, 0
	all := append(ph, m...)
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var acc uint32
	for i := 0; i < len(all); i += 2 {
		acc += uint32(all[i])<<8 | uint32(all[i+1])
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}

// fixChecksum rewrites the ICMPv6 checksum of an Ethernet+IPv6+ICMPv6 frame
// after a test edited it.
func fixChecksum(f []byte) {
	src := netip.AddrFrom16([16]byte(f[22:38]))
	dst := netip.AddrFrom16([16]byte(f[38:54]))
	plen := int(binary.BigEndian.Uint16(f[18:20]))
	msg := f[54 : 54+plen]
	binary.BigEndian.PutUint16(msg[2:4], refChecksum(src, dst, msg))
}

// withRoom copies frame into a buffer with head bytes of headroom and tail
// bytes of tailroom, both filled with a marker, and returns the buffer and the
// frame's offset and end.
func withRoom(frame []byte, head, tail int) (b []byte, off, end int) {
	b = bytes.Repeat([]byte{0xa5}, head+len(frame)+tail)
	copy(b[head:], frame)
	return b, head, head + len(frame)
}

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{
		Replied: "replied", NotForUs: "not_for_us", Malformed: "malformed", NotNeigh: "not_neigh", 200: "unknown",
	} {
		if got := r.String(); got != want {
			t.Errorf("Result(%d).String() = %q, want %q", r, got, want)
		}
	}
}

func TestOwns(t *testing.T) {
	r := New(ourMAC, []netip.Addr{
		our4, our6, our6, netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("::ffff:192.0.2.1"), {},
	})
	if len(r.v4) != 2 || len(r.v6) != 2 {
		t.Fatalf("v4 %d v6 %d addresses, want 2 and 2 (dedup, unmap, invalid dropped)", len(r.v4), len(r.v6))
	}
	for _, tc := range []struct {
		a    netip.Addr
		want bool
	}{
		{our4, true},
		{our6, true},
		{netip.MustParseAddr("fe80::1"), true},
		{netip.MustParseAddr("fe80::1%eth1"), true},
		{netip.MustParseAddr("192.0.2.1"), true},
		{netip.MustParseAddr("::ffff:10.244.1.0"), true},
		{other4, false},
		{other6, false},
		{netip.Addr{}, false},
	} {
		if got := r.Owns(tc.a); got != tc.want {
			t.Errorf("Owns(%v) = %v, want %v", tc.a, got, tc.want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { r.Owns(our6) }); a != 0 {
		t.Errorf("Owns allocates %v per call", a)
	}
	if r.MAC() != ourMAC {
		t.Errorf("MAC() = %v", r.MAC())
	}
}

func TestBadBounds(t *testing.T) {
	r := newTestResponder()
	b := make([]byte, 100)
	for _, tc := range []struct{ off, end int }{
		{-1, 50}, {0, 101}, {60, 50}, {101, 101}, {0, -1}, {50, 60},
	} {
		if res, n := r.Handle(b, tc.off, tc.end); res != Malformed || n != 0 {
			t.Errorf("Handle(off %d, end %d) = %v, %d; want malformed", tc.off, tc.end, res, n)
		}
	}
	if res, _ := r.Handle(nil, 0, 0); res != Malformed {
		t.Errorf("Handle(nil) = %v", res)
	}
}

func TestNotNeighIPv4(t *testing.T) {
	ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ip(peer4), DstIP: ip(our4)}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	if err := udp.SetNetworkLayerForChecksum(ip4); err != nil {
		t.Fatal(err)
	}
	frame := serialize(t,
		&layers.Ethernet{SrcMAC: hw(peerMAC), DstMAC: hw(ourMAC), EthernetType: layers.EthernetTypeIPv4},
		ip4, udp, gopacket.Payload("hello"),
	)
	r := newTestResponder()
	b, off, end := withRoom(frame, 8, 100)
	if res, n := r.Handle(b, off, end); res != NotNeigh || n != 0 {
		t.Fatalf("IPv4/UDP: %v, %d; want not_neigh", res, n)
	}
	// 802.1Q-tagged ARP is not looked into.
	tagged := serialize(t,
		&layers.Ethernet{SrcMAC: hw(peerMAC), DstMAC: hw(bcast), EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 5, Type: layers.EthernetTypeARP},
		arpLayer(layers.ARPRequest, peerMAC, peer4, MAC{}, our4),
	)
	if res, _ := r.Handle(tagged, 0, len(tagged)); res != NotNeigh {
		t.Fatalf("802.1Q ARP: %v; want not_neigh", res)
	}
}
