package neigh

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

type nsSpec struct {
	ethSrc, ethDst MAC
	src, dst       netip.Addr
	hop            uint8
	target         netip.Addr
	sll            *MAC // Source Link-Layer Address option, if any
}

func defaultNS() nsSpec {
	m := peerMAC
	return nsSpec{
		ethSrc: peerMAC,
		ethDst: MAC{0x33, 0x33, 0xff, 0x00, 0x00, 0x01},
		src:    peer6,
		dst:    solicitedNode(our6),
		hop:    255,
		target: our6,
		sll:    &m,
	}
}

// nsFrame builds a Neighbour Solicitation with gopacket, checksum included.
func nsFrame(tb testing.TB, s nsSpec) []byte {
	tb.Helper()
	ip6 := &layers.IPv6{Version: 6, HopLimit: s.hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip(s.src), DstIP: ip(s.dst)}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		tb.Fatal(err)
	}
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: ip(s.target)}
	if s.sll != nil {
		ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: append([]byte(nil), s.sll[:]...)}}
	}
	return serialize(tb,
		&layers.Ethernet{SrcMAC: hw(s.ethSrc), DstMAC: hw(s.ethDst), EthernetType: layers.EthernetTypeIPv6},
		ip6, icmp, ns,
	)
}

// naFrame builds, with gopacket, the advertisement we expect in answer.
func naFrame(tb testing.TB, ethDst MAC, dst, target netip.Addr, flags uint8) []byte {
	tb.Helper()
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip(target), DstIP: ip(dst)}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb,
		&layers.Ethernet{SrcMAC: hw(ourMAC), DstMAC: hw(ethDst), EthernetType: layers.EthernetTypeIPv6},
		ip6, icmp,
		&layers.ICMPv6NeighborAdvertisement{
			Flags:         flags,
			TargetAddress: ip(target),
			Options:       layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: append([]byte(nil), ourMAC[:]...)}},
		},
	)
}

// checkNA decodes reply with gopacket and checks that it is an advertisement
// from us, and that its checksum verifies with the reference implementation.
func checkNA(tb testing.TB, reply []byte, ethDst MAC, dst, target netip.Addr, solicited bool) {
	tb.Helper()
	if len(reply) != NAReplyLen {
		tb.Fatalf("reply length %d, want %d", len(reply), NAReplyLen)
	}
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("decode reply: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if eth == nil || ip6 == nil || icmp == nil || na == nil {
		tb.Fatalf("reply is not an NA: %v", p)
	}
	if !bytes.Equal(eth.DstMAC, ethDst[:]) || !bytes.Equal(eth.SrcMAC, ourMAC[:]) {
		tb.Errorf("ethernet dst %v src %v, want %v %v", eth.DstMAC, eth.SrcMAC, hw(ethDst), hw(ourMAC))
	}
	if ip6.Version != 6 || ip6.TrafficClass != 0 || ip6.FlowLabel != 0 || ip6.Length != 32 ||
		ip6.NextHeader != layers.IPProtocolICMPv6 || ip6.HopLimit != 255 {
		tb.Errorf("ipv6 header: %+v", ip6)
	}
	if !ip6.SrcIP.Equal(ip(target)) || !ip6.DstIP.Equal(ip(dst)) {
		tb.Errorf("ipv6 src %v dst %v, want %v %v", ip6.SrcIP, ip6.DstIP, target, dst)
	}
	if icmp.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0) {
		tb.Errorf("icmpv6 type %v", icmp.TypeCode)
	}
	if want := refChecksum(target, dst, reply[54:]); icmp.Checksum != want {
		tb.Errorf("icmpv6 checksum %#04x, reference %#04x", icmp.Checksum, want)
	}
	if na.Router() || na.Solicited() != solicited || !na.Override() {
		tb.Errorf("NA flags %#02x: router %v solicited %v override %v", na.Flags, na.Router(), na.Solicited(), na.Override())
	}
	if !na.TargetAddress.Equal(ip(target)) {
		tb.Errorf("NA target %v, want %v", na.TargetAddress, target)
	}
	if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || !bytes.Equal(na.Options[0].Data, ourMAC[:]) {
		tb.Errorf("NA options %v", na.Options)
	}
}

func TestNSReply(t *testing.T) {
	r := newTestResponder()
	allNodesAddr := netip.MustParseAddr("ff02::1")
	noSLL := defaultNS()
	noSLL.sll = nil
	noSLL.ethSrc = MAC{0x02, 0, 0, 0, 0, 9}
	unicast := defaultNS()
	unicast.ethDst, unicast.dst = ourMAC, our6
	ll := defaultNS()
	ll.src, ll.target, ll.dst = netip.MustParseAddr("fe80::1"), ourLL, solicitedNode(ourLL)
	dad := defaultNS()
	dad.src, dad.sll = netip.IPv6Unspecified(), nil
	for _, tc := range []struct {
		name      string
		ns        nsSpec
		ethDst    MAC
		dst       netip.Addr
		solicited bool
	}{
		{"with SLLA", defaultNS(), peerMAC, peer6, true},
		{"without SLLA: ethernet source", noSLL, noSLL.ethSrc, peer6, true},
		{"unicast NUD probe", unicast, peerMAC, peer6, true},
		{"link-local", ll, peerMAC, ll.src, true},
		{"DAD", dad, allNodesMAC, allNodesAddr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := nsFrame(t, tc.ns)
			b, off, end := withRoom(req, 10, 40)
			orig := append([]byte(nil), b...)
			res, n := r.Handle(b, off, end)
			if res != Replied || n != NAReplyLen {
				t.Fatalf("Handle = %v, %d; want replied, %d", res, n, NAReplyLen)
			}
			reply := b[off : off+n]
			checkNA(t, reply, tc.ethDst, tc.dst, tc.ns.target, tc.solicited)
			flags := uint8(0x20)
			if tc.solicited {
				flags |= 0x40
			}
			if want := naFrame(t, tc.ethDst, tc.dst, tc.ns.target, flags); !bytes.Equal(reply, want) {
				t.Errorf("reply differs from gopacket's NA:\n got %x\nwant %x", reply, want)
			}
			if !bytes.Equal(b[:off], orig[:off]) || !bytes.Equal(b[off+n:], orig[off+n:]) {
				t.Errorf("Handle wrote outside b[off:off+n]")
			}
		})
	}
}

func TestNSExactRoom(t *testing.T) {
	r := newTestResponder()
	s := defaultNS()
	s.sll = nil
	req := nsFrame(t, s) // 78 bytes
	b := append([]byte(nil), req...)
	if res, _ := r.Handle(b, 0, len(b)); res != Malformed {
		t.Fatalf("78-byte NS in a 78-byte buffer: %v, want malformed (no room)", res)
	}
	if !bytes.Equal(b, req) {
		t.Fatalf("buffer changed")
	}
	b = make([]byte, NAReplyLen)
	copy(b, req)
	if res, n := r.Handle(b, 0, len(req)); res != Replied || n != NAReplyLen {
		t.Fatalf("78-byte NS in an 86-byte buffer: %v, %d", res, n)
	}
	checkNA(t, b, peerMAC, peer6, our6, true)
}

func TestNSNoReply(t *testing.T) {
	r := newTestResponder()
	with := func(f func(s *nsSpec)) []byte {
		s := defaultNS()
		f(&s)
		return nsFrame(t, s)
	}
	// edit changes the default NS's bytes; fix recomputes the checksum.
	edit := func(fix bool, f func(b []byte) []byte) []byte {
		b := f(nsFrame(t, defaultNS()))
		if fix {
			fixChecksum(b)
		}
		return b
	}
	na := serialize(t, naFrameLayers(t)...)
	udp6 := func() []byte {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: ip(peer6), DstIP: ip(our6)}
		u := &layers.UDP{SrcPort: 1000, DstPort: 2000}
		_ = u.SetNetworkLayerForChecksum(ip6)
		return serialize(t, &layers.Ethernet{SrcMAC: hw(peerMAC), DstMAC: hw(ourMAC), EthernetType: layers.EthernetTypeIPv6}, ip6, u, gopacket.Payload("data"))
	}()
	echo := func() []byte {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip(peer6), DstIP: ip(our6)}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		_ = ic.SetNetworkLayerForChecksum(ip6)
		return serialize(t, &layers.Ethernet{SrcMAC: hw(peerMAC), DstMAC: hw(ourMAC), EthernetType: layers.EthernetTypeIPv6}, ip6, ic, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
	}()

	for _, tc := range []struct {
		name  string
		frame []byte
		want  Result
	}{
		{"other target", with(func(s *nsSpec) { s.target, s.dst = other6, solicitedNode(other6) }), NotForUs},
		{"IPv4 owned target as mapped", with(func(s *nsSpec) { s.target = netip.MustParseAddr("::ffff:10.244.1.0") }), NotForUs},
		{"unicast to another MAC", with(func(s *nsSpec) { s.ethDst = MAC{0x02, 0, 0, 0, 0, 0x77} }), NotForUs},
		{"neighbour advertisement", na, NotForUs},
		{"hop limit 64", with(func(s *nsSpec) { s.hop = 64 }), Malformed},
		{"hop limit 254", with(func(s *nsSpec) { s.hop = 254 }), Malformed},
		{"bad checksum", edit(false, func(b []byte) []byte { b[57] ^= 0x01; return b }), Malformed},
		{"flipped target bit", edit(false, func(b []byte) []byte { b[70] ^= 0x80; return b }), Malformed},
		{"code 1", edit(true, func(b []byte) []byte { b[55] = 1; return b }), Malformed},
		{"multicast target", with(func(s *nsSpec) { s.target = netip.MustParseAddr("ff02::1") }), Malformed},
		{"multicast source", with(func(s *nsSpec) { s.src = netip.MustParseAddr("ff02::2") }), Malformed},
		{"DAD with SLLA", with(func(s *nsSpec) { s.src = netip.IPv6Unspecified() }), Malformed},
		{"DAD to unicast dst", with(func(s *nsSpec) { s.src, s.sll, s.dst = netip.IPv6Unspecified(), nil, our6 }), Malformed},
		{"multicast SLLA", with(func(s *nsSpec) { m := MAC{0x33, 0x33, 0, 0, 0, 1}; s.sll = &m }), Malformed},
		{"multicast ethernet source, no SLLA", with(func(s *nsSpec) { s.sll, s.ethSrc = nil, MAC{0x01, 0, 0x5e, 0, 0, 1} }), Malformed},
		{"option length 0", edit(true, func(b []byte) []byte { b[79] = 0; return b }), Malformed},
		{"option overruns", edit(true, func(b []byte) []byte { b[79] = 2; return b }), Malformed},
		{"dangling option byte", edit(true, func(b []byte) []byte {
			b = append(b, 0)
			binary.BigEndian.PutUint16(b[18:20], 33)
			return b
		}), Malformed},
		{"short NS (20 bytes)", edit(true, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[18:20], 20)
			return b[:74]
		}), Malformed},
		{"payload length beyond frame", edit(false, func(b []byte) []byte { binary.BigEndian.PutUint16(b[18:20], 33); return b }), Malformed},
		{"IP version 4 in IPv6 frame", edit(false, func(b []byte) []byte { b[14] = 0x40; return b }), Malformed},
		{"UDP over IPv6", udp6, NotNeigh},
		{"ICMPv6 echo", echo, NotNeigh},
		{"hop-by-hop header first", edit(false, func(b []byte) []byte { b[20] = 0; return b }), NotNeigh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, off, end := withRoom(tc.frame, 6, 100)
			orig := append([]byte(nil), b...)
			if res, n := r.Handle(b, off, end); res != tc.want || n != 0 {
				t.Fatalf("Handle = %v, %d; want %v, 0", res, n, tc.want)
			}
			if !bytes.Equal(b, orig) {
				t.Errorf("buffer changed without a reply")
			}
		})
	}
}

func naFrameLayers(tb testing.TB) []gopacket.SerializableLayer {
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip(peer6), DstIP: ip(our6)}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		tb.Fatal(err)
	}
	return []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: hw(peerMAC), DstMAC: hw(ourMAC), EthernetType: layers.EthernetTypeIPv6},
		ip6, icmp,
		&layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: ip(peer6),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: append([]byte(nil), peerMAC[:]...)}}},
	}
}

func TestNSPaddedFrame(t *testing.T) {
	// Trailing Ethernet padding after the IPv6 payload is ignored.
	r := newTestResponder()
	req := append(nsFrame(t, defaultNS()), 0, 0, 0, 0)
	b, off, end := withRoom(req, 0, 10)
	if res, n := r.Handle(b, off, end); res != Replied || n != NAReplyLen {
		t.Fatalf("Handle = %v, %d", res, n)
	}
	checkNA(t, b[off:off+NAReplyLen], peerMAC, peer6, our6, true)
}

func TestNSTruncated(t *testing.T) {
	r := newTestResponder()
	req := nsFrame(t, defaultNS())
	for l := 0; l < len(req); l++ {
		b, off, end := withRoom(req[:l], 5, 200)
		if res, n := r.Handle(b, off, end); res != Malformed || n != 0 {
			t.Errorf("len %d: %v, %d; want malformed", l, res, n)
		}
		b = append([]byte(nil), req[:l]...)
		if res, n := r.Handle(b, 0, l); res != Malformed || n != 0 {
			t.Errorf("len %d exact: %v, %d; want malformed", l, res, n)
		}
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	// Odd and even lengths, all-ones data, against the naive reference.
	src, dst := peer6, our6
	for l := 4; l < 80; l++ {
		msg := make([]byte, l)
		for i := range msg {
			msg[i] = byte(i*37 + l)
			if l%3 == 0 {
				msg[i] = 0xff
			}
		}
		msg[2], msg[3] = 0, 0
		s, d := src.As16(), dst.As16()
		got := icmpv6Checksum(s[:], d[:], msg)
		if want := refChecksum(src, dst, msg); got != want {
			t.Fatalf("len %d: checksum %#04x, reference %#04x", l, got, want)
		}
		binary.BigEndian.PutUint16(msg[2:4], got)
		if !checksumOK(s[:], d[:], msg) {
			t.Fatalf("len %d: checksum does not verify", l)
		}
	}
}

func TestNSNoAlloc(t *testing.T) {
	r := newTestResponder()
	req := nsFrame(t, defaultNS())
	b := make([]byte, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		copy(b[32:], req)
		if res, _ := r.Handle(b, 32, 32+len(req)); res != Replied {
			t.Fatalf("Handle = %v", res)
		}
	})
	if allocs != 0 {
		t.Errorf("Handle(NS) allocates %v per call", allocs)
	}
}
