package encap

import "testing"

// Benchmarks of the per-packet hot path. Each reports allocations; the
// target is 0 allocs/op and ≤ 20 ns/op for header work. Checksums over a
// payload are benchmarked separately with a 64-byte payload.

var (
	benchSink  int
	benchSinkR DropReason
)

func BenchmarkPushIPv4(b *testing.B) {
	h, _ := outer4(ProtoIPIP)
	buf, off, end := withHeadroom(make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		benchSink = PushIPv4(buf, off, end, h)
	}
}

func BenchmarkPushIPv6(b *testing.B) {
	h, _ := outer6(ProtoUDP)
	buf, off, end := withHeadroom(make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		benchSink = PushIPv6(buf, off, end, h)
	}
}

func BenchmarkPushUDP(b *testing.B) {
	buf, off, end := withHeadroom(make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		benchSink = PushUDP(buf, off, end, 50000, PortVXLAN)
	}
}

func BenchmarkSetUDPChecksum64(b *testing.B) {
	buf, off, end := withHeadroom(make([]byte, 64))
	s := PushUDP(buf, off, end, 50000, PortVXLAN)
	b.ReportAllocs()
	for b.Loop() {
		SetUDPChecksum(buf, s, end, outer4Src, outer4Dst)
	}
}

func BenchmarkPushVXLAN(b *testing.B) {
	buf, off, _ := withHeadroom(make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		benchSink = PushVXLAN(buf, off, 4096)
	}
}

func BenchmarkPushEthernet(b *testing.B) {
	buf, off, _ := withHeadroom(make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		benchSink = PushEthernet(buf, off, innerMACDst, innerMACSrc, EtherTypeIPv4)
	}
}

// BenchmarkEncapVXLANStack is the whole VXLAN egress header work for one
// packet: inner Ethernet, VXLAN, UDP (checksum 0) and outer IPv4.
func BenchmarkEncapVXLANStack(b *testing.B) {
	h, _ := outer4(ProtoUDP)
	buf, off, end := withHeadroom(innerIPv4(b))
	b.ReportAllocs()
	for b.Loop() {
		s := PushEthernet(buf, off, innerMACDst, innerMACSrc, EtherTypeIPv4)
		s = PushVXLAN(buf, s, 4096)
		s = PushUDP(buf, s, end, 50000, PortVXLAN)
		benchSink = PushIPv4(buf, s, end, h)
	}
}

// BenchmarkEncapVXLANStackFlowHash adds choosing the source port from the
// inner flow, as the data plane does per packet.
func BenchmarkEncapVXLANStackFlowHash(b *testing.B) {
	h, _ := outer4(ProtoUDP)
	buf, off, end := withHeadroom(innerIPv4(b))
	b.ReportAllocs()
	for b.Loop() {
		sport := SourcePort(FlowHash(buf, off, end), SourcePortMin, SourcePortMax)
		s := PushEthernet(buf, off, innerMACDst, innerMACSrc, EtherTypeIPv4)
		s = PushVXLAN(buf, s, 4096)
		s = PushUDP(buf, s, end, sport, PortVXLAN)
		benchSink = PushIPv4(buf, s, end, h)
	}
}

func BenchmarkPushGRE(b *testing.B) {
	cases := []struct {
		name string
		h    GREHeader
	}{
		{"plain", GREHeader{Protocol: EtherTypeIPv4}},
		{"key", GREHeader{Protocol: EtherTypeIPv4, HasKey: true, Key: 7}},
		{"key_seq", GREHeader{Protocol: EtherTypeIPv4, HasKey: true, Key: 7, HasSeq: true, Seq: 1}},
		{"checksum_64B", GREHeader{Protocol: EtherTypeIPv4, HasChecksum: true, HasKey: true, Key: 7}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf, off, end := withHeadroom(make([]byte, 64))
			b.ReportAllocs()
			for b.Loop() {
				benchSink = PushGRE(buf, off, end, &c.h)
			}
		})
	}
}

func BenchmarkParseIPv4(b *testing.B) {
	p := packetIPIP(b)
	var h IPv4Header
	b.ReportAllocs()
	for b.Loop() {
		_, _, benchSinkR = ParseIPv4(p, 0, len(p), &h)
	}
}

func BenchmarkParseIPv6(b *testing.B) {
	p := packetIPv6UDP(b)
	var h IPv6Header
	b.ReportAllocs()
	for b.Loop() {
		_, _, benchSinkR = ParseIPv6(p, 0, len(p), &h)
	}
}

func BenchmarkParseUDP(b *testing.B) {
	d := datagramUDP(b, outer4Src, outer4Dst) // 69 bytes
	for _, verify := range []bool{false, true} {
		name := "no_verify"
		if verify {
			name = "verify_61B_payload"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _, _, benchSinkR = ParseUDP(d, 0, len(d), outer4Src, outer4Dst, verify)
			}
		})
	}
}

func BenchmarkParseEthernet(b *testing.B) {
	f := innerFrame(b, innerIPv4(b), EtherTypeIPv4)
	b.ReportAllocs()
	for b.Loop() {
		_, _, _, _, benchSinkR = ParseEthernet(f, 0, len(f))
	}
}

func BenchmarkDecapIPIP(b *testing.B) {
	p := packetIPIP(b)
	var h IPv4Header
	b.ReportAllocs()
	for b.Loop() {
		_, _, benchSinkR = DecapIPIP(p, 0, len(p), &h)
	}
}

func BenchmarkDecapSIT(b *testing.B) {
	p := packetSIT(b)
	var h IPv4Header
	b.ReportAllocs()
	for b.Loop() {
		_, _, benchSinkR = DecapSIT(p, 0, len(p), &h)
	}
}

func BenchmarkDecapGRE(b *testing.B) {
	in4 := innerIPv4(b)
	pad := make([]byte, 64)
	pad[0], pad[3] = 0x45, 64 // a 64-byte IPv4 packet, for the checksum case
	cases := []struct {
		name  string
		h     GREHeader
		inner []byte
	}{
		{"plain", GREHeader{Protocol: EtherTypeIPv4}, in4},
		{"key", GREHeader{Protocol: EtherTypeIPv4, HasKey: true, Key: 7}, in4},
		{"key_seq", GREHeader{Protocol: EtherTypeIPv4, HasKey: true, Key: 7, HasSeq: true, Seq: 1}, in4},
		{"checksum_key_64B", GREHeader{Protocol: EtherTypeIPv4, HasChecksum: true, HasKey: true, Key: 7}, pad},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			p := payloadGRE(c.h, c.inner)
			want := GREExpect{HasKey: c.h.HasKey, Key: c.h.Key}
			var h GREHeader
			b.ReportAllocs()
			for b.Loop() {
				_, _, benchSinkR = DecapGRE(p, 0, len(p), want, &h)
			}
			if benchSinkR != OK {
				b.Fatal(benchSinkR)
			}
		})
	}
}

func BenchmarkDecapVXLAN(b *testing.B) {
	p := payloadVXLAN(b, 4096)
	b.ReportAllocs()
	for b.Loop() {
		benchSink, benchSinkR = DecapVXLAN(p, 0, len(p), 4096)
	}
}

// BenchmarkDecapVXLANStack is the whole VXLAN ingress header work for one
// packet: outer IPv4, UDP (no checksum verification), VXLAN, inner
// Ethernet and the inner IP check.
func BenchmarkDecapVXLANStack(b *testing.B) {
	h4, _ := outer4(ProtoUDP)
	buf, off, end := withHeadroom(innerIPv4(b))
	s := PushEthernet(buf, off, innerMACDst, innerMACSrc, EtherTypeIPv4)
	s = PushVXLAN(buf, s, 4096)
	s = PushUDP(buf, s, end, 50000, PortVXLAN)
	s = PushIPv4(buf, s, end, h4)
	var h IPv4Header
	b.ReportAllocs()
	for b.Loop() {
		po, pe, r := ParseIPv4(buf, s, end, &h)
		_, _, uo, ue, r2 := ParseUDP(buf, po, pe, h.Src, h.Dst, false)
		eo, r3 := DecapVXLAN(buf, uo, ue, 4096)
		_, _, _, io, r4 := ParseEthernet(buf, eo, ue)
		ie, r5 := CheckInner(buf, io, ue, 4)
		benchSink, benchSinkR = ie, r|r2|r3|r4|r5
	}
	if benchSinkR != OK {
		b.Fatal(benchSinkR)
	}
}

func BenchmarkDecapIPUDP(b *testing.B) {
	p := innerIPv4(b)
	b.ReportAllocs()
	for b.Loop() {
		_, _, benchSinkR = DecapIPUDP(p, 0, len(p))
	}
}

func BenchmarkFlowHash(b *testing.B) {
	for _, c := range []struct {
		name string
		p    []byte
	}{{"ipv4_udp", innerIPv4(b)}, {"ipv6_tcp", innerIPv6(b)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchSink = int(FlowHash(c.p, 0, len(c.p)))
			}
		})
	}
}

func BenchmarkInnerAddrs(b *testing.B) {
	p := innerIPv6(b)
	b.ReportAllocs()
	for b.Loop() {
		_, _, ok := InnerAddrs(p, 0, len(p))
		if ok {
			benchSink++
		}
	}
}

// BenchmarkSum is the checksum over a 1400-byte payload (a TCP segment).
func BenchmarkSum1400(b *testing.B) {
	d := make([]byte, 1400)
	for i := range d {
		d[i] = byte(i)
	}
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		sinkSum = Sum(d, 0)
	}
}

var sinkSum uint64
