package encap

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// goldenCase is one tunnel stack built two ways: by our Push functions and
// by gopacket. Both builds must be byte-identical; gopacket must decode
// ours with the fields we set; and our Decap must take gopacket's build
// apart, landing exactly on the inner packet.
type goldenCase struct {
	name  string
	inner []byte                                                            // what the tunnel carries and Decap must return
	push  func(b []byte, off, end int) int                                  // our encapsulation; returns the packet start
	ref   []gopacket.SerializableLayer                                      // gopacket's build, ending with gopacket.Payload(inner)
	zero  []int                                                             // bytes of gopacket's build we deliberately leave 0 (UDP checksum off)
	first gopacket.LayerType                                                // outermost layer for gopacket's decoder
	check func(t *testing.T, ls []gopacket.Layer)                           // fields of gopacket's decoding of our build
	decap func(t *testing.T, b []byte, off, end int) (int, int, DropReason) // our decapsulation
}

func runGolden(t *testing.T, cases []goldenCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, off, end := withHeadroom(c.inner)
			start := c.push(b, off, end)
			ours := b[start:end]
			if !bytes.Equal(b[off:end], c.inner) {
				t.Fatal("payload changed by encapsulation")
			}

			theirs := serialize(t, c.ref...)
			for _, z := range c.zero {
				theirs[z] = 0
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("ours differs from gopacket's build\nours:   %s\ntheirs: %s", hex.EncodeToString(ours), hex.EncodeToString(theirs))
			}

			pkt := gopacket.NewPacket(ours, c.first, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("gopacket cannot decode ours: %v", el.Error())
			}
			c.check(t, pkt.Layers())

			// Decap gopacket's build at a non-zero offset with junk after
			// it, so offsets are proven relative to off and bounded by end.
			const lead, tail = 3, 5
			buf := make([]byte, lead+len(theirs)+tail)
			copy(buf[lead:], theirs)
			for i := lead + len(theirs); i < len(buf); i++ {
				buf[i] = 0xee
			}
			io, ie, r := c.decap(t, buf, lead, lead+len(theirs))
			if r != OK {
				t.Fatalf("decap of gopacket's build: %v", r)
			}
			if want := lead + (off - start); io != want || ie != lead+len(theirs) {
				t.Errorf("decap offsets = [%d, %d), want [%d, %d)", io, ie, want, lead+len(theirs))
			}
			if !bytes.Equal(buf[io:ie], c.inner) {
				t.Errorf("decap inner = %x, want %x", buf[io:ie], c.inner)
			}
		})
	}
}

// checkLayerBytes verifies that gopacket saw exactly want as layer l plus
// its payload.
func checkLayerBytes(t *testing.T, l gopacket.Layer, want []byte) {
	t.Helper()
	got := append(append([]byte(nil), l.LayerContents()...), l.LayerPayload()...)
	if !bytes.Equal(got, want) {
		t.Errorf("%v layer bytes = %x, want %x", l.LayerType(), got, want)
	}
}

func layerAt[T gopacket.Layer](t *testing.T, ls []gopacket.Layer, i int) T {
	t.Helper()
	if i >= len(ls) {
		t.Fatalf("gopacket decoded %d layers, want layer %d", len(ls), i)
	}
	l, ok := ls[i].(T)
	if !ok {
		t.Fatalf("layer %d is %T (%v)", i, ls[i], ls[i].LayerType())
	}
	return l
}

func TestGoldenIPIP(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	hIPIP, gIPIP := outer4(ProtoIPIP)
	hSIT, gSIT := outer4(ProtoIPv6)
	runGolden(t, []goldenCase{
		{
			name: "ipv4/ipip/ipv4", inner: in4,
			push:  func(b []byte, off, end int) int { return PushIPv4(b, off, end, hIPIP) },
			ref:   []gopacket.SerializableLayer{gIPIP, gopacket.Payload(in4)},
			first: layers.LayerTypeIPv4,
			check: func(t *testing.T, ls []gopacket.Layer) {
				checkOuter4(t, layerAt[*layers.IPv4](t, ls, 0), hIPIP, IPv4Len+len(in4))
				checkLayerBytes(t, layerAt[*layers.IPv4](t, ls, 1), in4)
			},
			decap: func(t *testing.T, b []byte, off, end int) (int, int, DropReason) {
				var o IPv4Header
				io, ie, r := DecapIPIP(b, off, end, &o)
				if r == OK && o != *hIPIP {
					t.Errorf("outer = %+v, want %+v", o, *hIPIP)
				}
				return io, ie, r
			},
		},
		{
			name: "ipv4/sit/ipv6", inner: in6,
			push:  func(b []byte, off, end int) int { return PushIPv4(b, off, end, hSIT) },
			ref:   []gopacket.SerializableLayer{gSIT, gopacket.Payload(in6)},
			first: layers.LayerTypeIPv4,
			check: func(t *testing.T, ls []gopacket.Layer) {
				checkOuter4(t, layerAt[*layers.IPv4](t, ls, 0), hSIT, IPv4Len+len(in6))
				checkLayerBytes(t, layerAt[*layers.IPv6](t, ls, 1), in6)
			},
			decap: func(t *testing.T, b []byte, off, end int) (int, int, DropReason) {
				var o IPv4Header
				io, ie, r := DecapSIT(b, off, end, &o)
				if r == OK && o != *hSIT {
					t.Errorf("outer = %+v, want %+v", o, *hSIT)
				}
				return io, ie, r
			},
		},
	})
}

func TestGoldenGRE(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	frame := innerFrame(t, in4, layers.EthernetTypeIPv4)
	payloads := []struct {
		proto uint16
		inner []byte
	}{{EtherTypeIPv4, in4}, {EtherTypeIPv6, in6}, {EtherTypeTEB, frame}}

	var cases []goldenCase
	for _, p := range payloads {
		for flags := 0; flags < 8; flags++ {
			gh := &GREHeader{Protocol: p.proto, HasChecksum: flags&1 != 0, HasKey: flags&2 != 0, HasSeq: flags&4 != 0}
			if gh.HasKey {
				gh.Key = 0xdeadbeef
			}
			if gh.HasSeq {
				gh.Seq = 0x01020304
			}
			for _, v6 := range []bool{false, true} {
				if v6 && flags != 7 {
					continue // IPv6 outer: one case with every option is enough
				}
				cases = append(cases, greCase(p.inner, gh, v6))
			}
		}
	}
	runGolden(t, cases)
}

func greCase(inner []byte, gh *GREHeader, v6 bool) goldenCase {
	gg := &layers.GRE{ChecksumPresent: gh.HasChecksum, KeyPresent: gh.HasKey, Key: gh.Key, SeqPresent: gh.HasSeq, Seq: gh.Seq,
		Protocol: layers.EthernetType(gh.Protocol)}
	want := GREExpect{HasKey: gh.HasKey, Key: gh.Key}
	h4, g4 := outer4(ProtoGRE)
	h6, g6 := outer6(ProtoGRE)
	outerLayer := gopacket.SerializableLayer(g4)
	first := layers.LayerTypeIPv4
	outerName := "ipv4"
	if v6 {
		outerLayer, first, outerName = g6, layers.LayerTypeIPv6, "ipv6"
	}
	return goldenCase{
		name:  fmt.Sprintf("%s/gre/proto=%#04x/C=%t/K=%t/S=%t", outerName, gh.Protocol, gh.HasChecksum, gh.HasKey, gh.HasSeq),
		inner: inner,
		push: func(b []byte, off, end int) int {
			s := PushGRE(b, off, end, gh)
			if v6 {
				return PushIPv6(b, s, end, h6)
			}
			return PushIPv4(b, s, end, h4)
		},
		ref:   []gopacket.SerializableLayer{outerLayer, gg, gopacket.Payload(inner)},
		first: first,
		check: func(t *testing.T, ls []gopacket.Layer) {
			if v6 {
				checkOuter6(t, layerAt[*layers.IPv6](t, ls, 0), h6, gh.Len()+len(inner))
			} else {
				checkOuter4(t, layerAt[*layers.IPv4](t, ls, 0), h4, IPv4Len+gh.Len()+len(inner))
			}
			g := layerAt[*layers.GRE](t, ls, 1)
			if g.ChecksumPresent != gh.HasChecksum || g.KeyPresent != gh.HasKey || g.SeqPresent != gh.HasSeq ||
				g.RoutingPresent || g.StrictSourceRoute || g.AckPresent || g.RecursionControl != 0 || g.Flags != 0 || g.Version != 0 ||
				uint16(g.Protocol) != gh.Protocol || g.Key != gh.Key || g.Seq != gh.Seq || len(g.Contents) != gh.Len() {
				t.Errorf("GRE decoded by gopacket = %+v, pushed %+v", g, gh)
			}
			if gh.HasChecksum {
				all := append(append([]byte(nil), g.Contents...), g.Payload...)
				if refChecksum(all) != 0 || g.Checksum == 0 {
					t.Errorf("GRE checksum 0x%04x does not verify", g.Checksum)
				}
			}
			switch gh.Protocol {
			case EtherTypeIPv4:
				checkLayerBytes(t, layerAt[*layers.IPv4](t, ls, 2), inner)
			case EtherTypeIPv6:
				checkLayerBytes(t, layerAt[*layers.IPv6](t, ls, 2), inner)
			case EtherTypeTEB:
				eth := layerAt[*layers.Ethernet](t, ls, 2)
				checkLayerBytes(t, eth, inner)
				if !bytes.Equal(eth.DstMAC, innerMACDst[:]) || !bytes.Equal(eth.SrcMAC, innerMACSrc[:]) {
					t.Errorf("inner Ethernet = %v -> %v", eth.SrcMAC, eth.DstMAC)
				}
			}
		},
		decap: func(t *testing.T, b []byte, off, end int) (int, int, DropReason) {
			var payOff, payEnd int
			var r DropReason
			if v6 {
				var o IPv6Header
				payOff, payEnd, r = ParseIPv6(b, off, end, &o)
				if r == OK && o != *h6 {
					t.Errorf("outer = %+v, want %+v", o, *h6)
				}
			} else {
				var o IPv4Header
				payOff, payEnd, r = ParseIPv4(b, off, end, &o)
				if r == OK && o != *h4 {
					t.Errorf("outer = %+v, want %+v", o, *h4)
				}
			}
			if r != OK {
				return 0, 0, r
			}
			var got GREHeader
			io, ie, r := DecapGRE(b, payOff, payEnd, want, &got)
			if r == OK && got != *gh {
				t.Errorf("GRE = %+v, want %+v", got, *gh)
			}
			return io, ie, r
		},
	}
}

func TestGoldenVXLAN(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	const vni = 4096 // Calico's default VNI
	var cases []goldenCase
	for _, v6 := range []bool{false, true} {
		for _, csum := range []bool{false, true} {
			for _, inner := range [][]byte{in4, in6} {
				cases = append(cases, vxlanCase(inner, v6, csum, vni))
			}
		}
	}
	runGolden(t, cases)
}

func vxlanCase(inner []byte, v6, csum bool, vni uint32) goldenCase {
	etype, innerVersion, innerType := uint16(EtherTypeIPv4), 4, layers.LayerTypeIPv4
	if inner[0]>>4 == 6 {
		etype, innerVersion, innerType = EtherTypeIPv6, 6, layers.LayerTypeIPv6
	}
	sport := SourcePort(FlowHash(inner, 0, len(inner)), SourcePortMin, SourcePortMax)
	h4, g4 := outer4(ProtoUDP)
	h6, g6 := outer6(ProtoUDP)
	src, dst, outerLayer, first, outerLen := outer4Src, outer4Dst, gopacket.SerializableLayer(g4), layers.LayerTypeIPv4, IPv4Len
	if v6 {
		src, dst, outerLayer, first, outerLen = outer6Src, outer6Dst, g6, layers.LayerTypeIPv6, IPv6Len
	}
	gu := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: PortVXLAN}
	if v6 {
		gu.SetNetworkLayerForChecksum(g6)
	} else {
		gu.SetNetworkLayerForChecksum(g4)
	}
	var zero []int
	if !csum {
		zero = []int{outerLen + 6, outerLen + 7}
	}
	udpLen := UDPLen + VXLANLen + EthernetLen + len(inner)
	return goldenCase{
		name:  fmt.Sprintf("ipv%d/udp/vxlan/ethernet/ipv%d/udp_checksum=%t", map[bool]int{false: 4, true: 6}[v6], innerVersion, csum),
		inner: inner,
		push: func(b []byte, off, end int) int {
			s := PushEthernet(b, off, innerMACDst, innerMACSrc, etype)
			s = PushVXLAN(b, s, vni)
			s = PushUDP(b, s, end, sport, PortVXLAN)
			if csum {
				SetUDPChecksum(b, s, end, src, dst)
			}
			if v6 {
				return PushIPv6(b, s, end, h6)
			}
			return PushIPv4(b, s, end, h4)
		},
		ref: []gopacket.SerializableLayer{outerLayer, gu, &layers.VXLAN{ValidIDFlag: true, VNI: vni},
			&layers.Ethernet{DstMAC: net.HardwareAddr(innerMACDst[:]), SrcMAC: net.HardwareAddr(innerMACSrc[:]), EthernetType: layers.EthernetType(etype)},
			gopacket.Payload(inner)},
		zero:  zero,
		first: first,
		check: func(t *testing.T, ls []gopacket.Layer) {
			if v6 {
				checkOuter6(t, layerAt[*layers.IPv6](t, ls, 0), h6, udpLen)
			} else {
				checkOuter4(t, layerAt[*layers.IPv4](t, ls, 0), h4, IPv4Len+udpLen)
			}
			u := layerAt[*layers.UDP](t, ls, 1)
			if uint16(u.SrcPort) != sport || u.DstPort != PortVXLAN || int(u.Length) != udpLen || (u.Checksum != 0) != csum {
				t.Errorf("UDP decoded by gopacket = %+v", u)
			}
			if sport < SourcePortMin {
				t.Errorf("source port %d below %d", sport, SourcePortMin)
			}
			vx := layerAt[*layers.VXLAN](t, ls, 2)
			if !vx.ValidIDFlag || vx.VNI != vni || vx.GBPExtension || vx.GBPGroupPolicyID != 0 || !bytes.Equal(vx.Contents, []byte{8, 0, 0, 0, 0, 0x10, 0, 0}) {
				t.Errorf("VXLAN decoded by gopacket = %+v (%x)", vx, vx.Contents)
			}
			eth := layerAt[*layers.Ethernet](t, ls, 3)
			if !bytes.Equal(eth.DstMAC, innerMACDst[:]) || !bytes.Equal(eth.SrcMAC, innerMACSrc[:]) || uint16(eth.EthernetType) != etype {
				t.Errorf("inner Ethernet decoded by gopacket = %+v", eth)
			}
			if ls[4].LayerType() != innerType {
				t.Fatalf("inner layer is %v, want %v", ls[4].LayerType(), innerType)
			}
			checkLayerBytes(t, ls[4], inner)
		},
		decap: func(t *testing.T, b []byte, off, end int) (int, int, DropReason) {
			var payOff, payEnd int
			var r DropReason
			if v6 {
				var o IPv6Header
				payOff, payEnd, r = ParseIPv6(b, off, end, &o)
			} else {
				var o IPv4Header
				payOff, payEnd, r = ParseIPv4(b, off, end, &o)
			}
			if r != OK {
				return 0, 0, r
			}
			sp, dp, uOff, uEnd, r := ParseUDP(b, payOff, payEnd, src, dst, true)
			if r != OK {
				return 0, 0, r
			}
			if sp != sport || dp != PortVXLAN {
				t.Errorf("ports = %d -> %d", sp, dp)
			}
			eOff, r := DecapVXLAN(b, uOff, uEnd, vni)
			if r != OK {
				return 0, 0, r
			}
			d, s, et, io, r := ParseEthernet(b, eOff, uEnd)
			if r != OK {
				return 0, 0, r
			}
			if d != innerMACDst || s != innerMACSrc || et != etype {
				t.Errorf("inner Ethernet = %x %x %#04x", d, s, et)
			}
			ie, r := CheckInner(b, io, uEnd, innerVersion)
			return io, ie, r
		},
	}
}

func TestGoldenIPUDP(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	var cases []goldenCase
	for _, v6 := range []bool{false, true} {
		for _, inner := range [][]byte{in4, in6} {
			h4, g4 := outer4(ProtoUDP)
			h6, g6 := outer6(ProtoUDP)
			src, dst, outerLayer, first := outer4Src, outer4Dst, gopacket.SerializableLayer(g4), layers.LayerTypeIPv4
			gu := &layers.UDP{SrcPort: 33333, DstPort: PortIPUDP}
			gu.SetNetworkLayerForChecksum(g4)
			if v6 {
				src, dst, outerLayer, first = outer6Src, outer6Dst, g6, layers.LayerTypeIPv6
				gu.SetNetworkLayerForChecksum(g6)
			}
			innerType := layers.LayerTypeIPv4
			if inner[0]>>4 == 6 {
				innerType = layers.LayerTypeIPv6
			}
			cases = append(cases, goldenCase{
				name:  fmt.Sprintf("outer_v6=%t/udp/ipv%d", v6, inner[0]>>4),
				inner: inner,
				push: func(b []byte, off, end int) int {
					s := PushUDP(b, off, end, 33333, PortIPUDP)
					SetUDPChecksum(b, s, end, src, dst)
					if v6 {
						return PushIPv6(b, s, end, h6)
					}
					return PushIPv4(b, s, end, h4)
				},
				ref:   []gopacket.SerializableLayer{outerLayer, gu, gopacket.Payload(inner)},
				first: first,
				check: func(t *testing.T, ls []gopacket.Layer) {
					u := layerAt[*layers.UDP](t, ls, 1)
					if u.SrcPort != 33333 || u.DstPort != PortIPUDP || int(u.Length) != UDPLen+len(inner) || u.Checksum == 0 {
						t.Errorf("UDP decoded by gopacket = %+v", u)
					}
					if !bytes.Equal(u.Payload, inner) {
						t.Errorf("UDP payload = %x", u.Payload)
					}
					in := gopacket.NewPacket(u.Payload, innerType, gopacket.Default)
					if el := in.ErrorLayer(); el != nil {
						t.Errorf("inner does not decode: %v", el.Error())
					}
				},
				decap: func(t *testing.T, b []byte, off, end int) (int, int, DropReason) {
					var payOff, payEnd int
					var r DropReason
					if v6 {
						var o IPv6Header
						payOff, payEnd, r = ParseIPv6(b, off, end, &o)
					} else {
						var o IPv4Header
						payOff, payEnd, r = ParseIPv4(b, off, end, &o)
					}
					if r != OK {
						return 0, 0, r
					}
					_, _, uOff, uEnd, r := ParseUDP(b, payOff, payEnd, src, dst, true)
					if r != OK {
						return 0, 0, r
					}
					return DecapIPUDP(b, uOff, uEnd)
				},
			})
		}
	}
	runGolden(t, cases)
}

// TestChecksumMatchesReference checks the 32-bit-word checksum against the
// naive 16-bit one at every length and alignment up to 200 bytes.
func TestChecksumMatchesReference(t *testing.T) {
	data := make([]byte, 256)
	for i := range data {
		data[i] = byte(i*7 + 0xf3)
	}
	for start := 0; start < 4; start++ {
		for n := 0; n <= 200; n++ {
			d := data[start : start+n]
			if got, want := Checksum(d), refChecksum(d); got != want {
				t.Fatalf("Checksum(len %d at %d) = %#04x, want %#04x", n, start, got, want)
			}
		}
	}
	long := make([]byte, 9003)
	for i := range long {
		long[i] = byte(i*131 + i>>8)
	}
	for start := 0; start < 4; start++ {
		for n := 200; n+start <= len(long); n += 97 {
			d := long[start : start+n]
			if got, want := Checksum(d), refChecksum(d); got != want {
				t.Fatalf("Checksum(len %d at %d) = %#04x, want %#04x", n, start, got, want)
			}
			if got, want := Fold(Sum(d[n/2&^1:], Sum(d[:n/2&^1], 0))), ^refChecksum(d); got != want {
				t.Fatalf("Fold(Sum(two halves), len %d at %d) = %#04x, want %#04x", n, start, got, want)
			}
		}
	}
	ones := bytes.Repeat([]byte{0xff}, 70000) // accumulator carries
	if got, want := Checksum(ones), refChecksum(ones); got != want {
		t.Fatalf("Checksum(0xff * 70000) = %#04x, want %#04x", got, want)
	}
}

// FuzzChecksum compares the word-at-a-time checksum with the naive one.
func FuzzChecksum(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xff}, 100))
	f.Add(bytes.Repeat([]byte{0x01, 0x80, 0xfe}, 60))
	f.Fuzz(func(t *testing.T, d []byte) {
		if got, want := Checksum(d), refChecksum(d); got != want {
			t.Fatalf("Checksum = %#04x, want %#04x", got, want)
		}
	})
}

// TestSetUDPChecksumZeroIsFFFF builds a datagram whose checksum computes to
// 0 and checks that 0xFFFF goes on the wire instead (RFC 768).
func TestSetUDPChecksumZeroIsFFFF(t *testing.T) {
	b, off, end := withHeadroom(make([]byte, 2))
	s := PushUDP(b, off, end, 1, 2)
	SetUDPChecksum(b, s, end, outer4Src, outer4Dst)
	// With the checksum c just computed as the payload, the sum becomes
	// ^c + c = 0xFFFF, whose complement, the checksum, is 0.
	b[end-2], b[end-1] = b[s+6], b[s+7]
	b[s+6], b[s+7] = 0, 0
	SetUDPChecksum(b, s, end, outer4Src, outer4Dst)
	if b[s+6] != 0xff || b[s+7] != 0xff {
		t.Fatalf("checksum = %02x%02x, want ffff", b[s+6], b[s+7])
	}
	if _, _, _, _, r := ParseUDP(b, s, end, outer4Src, outer4Dst, true); r != OK {
		t.Fatalf("ParseUDP of 0xFFFF checksum: %v", r)
	}
}

// TestFinishChecksumFolds checks the fixed fold sequence against a plain
// fold loop at the accumulator's extremes.
func TestFinishChecksumFolds(t *testing.T) {
	loop := func(acc uint64) uint16 {
		for acc > 0xffff {
			acc = acc>>16 + acc&0xffff
		}
		return ^uint16(acc)
	}
	for _, acc := range []uint64{0, 1, 0xffff, 0x10000, 0x1fffe, 0x2fffd, 0xffffffff, 1 << 32, 1<<33 - 1, 5 << 32, 1<<64 - 1, 1<<64 - 2, 0x8000_0000_ffff_0001} {
		if got, want := finishChecksum(acc), loop(acc); got != want {
			t.Errorf("finishChecksum(%#x) = %#04x, want %#04x", acc, got, want)
		}
	}
}
