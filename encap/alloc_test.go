package encap

import "testing"

// TestZeroAllocs proves that every function the data plane calls per
// packet allocates nothing, on the success path and on a drop path.
func TestZeroAllocs(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	ipip, sit, v6udp := packetIPIP(t), packetSIT(t), packetIPv6UDP(t)
	udp4 := datagramUDP(t, outer4Src, outer4Dst)
	vx := payloadVXLAN(t, 42)
	frame := innerFrame(t, in4, EtherTypeIPv4)
	greAll := payloadGRE(GREHeader{Protocol: EtherTypeIPv4, HasChecksum: true, HasKey: true, Key: 7, HasSeq: true, Seq: 1}, in4)
	gh := &GREHeader{Protocol: EtherTypeIPv4, HasChecksum: true, HasKey: true, Key: 7, HasSeq: true, Seq: 1}
	oh4, _ := outer4(ProtoUDP)
	oh6, _ := outer6(ProtoUDP)
	b, off, end := withHeadroom(in4)
	var h4 IPv4Header
	var h6 IPv6Header
	var gout GREHeader
	var sink int
	var sinkR DropReason

	cases := []struct {
		name string
		fn   func()
	}{
		{"PushIPv4", func() { sink += PushIPv4(b, off, end, oh4) }},
		{"PushIPv6", func() { sink += PushIPv6(b, off, end, oh6) }},
		{"PushUDP", func() { sink += PushUDP(b, off, end, 1, 2) }},
		{"SetUDPChecksum/v4", func() { SetUDPChecksum(b, off-UDPLen, end, outer4Src, outer4Dst) }},
		{"SetUDPChecksum/v6", func() { SetUDPChecksum(b, off-UDPLen, end, outer6Src, outer6Dst) }},
		{"PushGRE", func() { sink += PushGRE(b, off, end, gh) }},
		{"PushVXLAN", func() { sink += PushVXLAN(b, off, 42) }},
		{"PushEthernet", func() { sink += PushEthernet(b, off, innerMACDst, innerMACSrc, EtherTypeIPv4) }},
		{"ParseIPv4", func() { _, _, sinkR = ParseIPv4(ipip, 0, len(ipip), &h4) }},
		{"ParseIPv4/drop", func() { _, _, sinkR = ParseIPv4(ipip, 0, 5, &h4) }},
		{"ParseIPv6", func() { _, _, sinkR = ParseIPv6(v6udp, 0, len(v6udp), &h6) }},
		{"ParseUDP/v4_verify", func() { _, _, _, _, sinkR = ParseUDP(udp4, 0, len(udp4), outer4Src, outer4Dst, true) }},
		{"ParseUDP/v6_verify", func() { _, _, _, _, sinkR = ParseUDP(v6udp, IPv6Len, len(v6udp), outer6Src, outer6Dst, true) }},
		{"ParseEthernet", func() { _, _, _, _, sinkR = ParseEthernet(frame, 0, len(frame)) }},
		{"CheckInner", func() { _, sinkR = CheckInner(in6, 0, len(in6), 6) }},
		{"DecapIPIP", func() { _, _, sinkR = DecapIPIP(ipip, 0, len(ipip), &h4) }},
		{"DecapSIT", func() { _, _, sinkR = DecapSIT(sit, 0, len(sit), &h4) }},
		{"DecapSIT/drop", func() { _, _, sinkR = DecapSIT(ipip, 0, len(ipip), &h4) }},
		{"DecapGRE", func() { _, _, sinkR = DecapGRE(greAll, 0, len(greAll), GREExpect{HasKey: true, Key: 7}, &gout) }},
		{"DecapGRE/drop", func() { _, _, sinkR = DecapGRE(greAll, 0, len(greAll), GREExpect{}, &gout) }},
		{"DecapVXLAN", func() { _, sinkR = DecapVXLAN(vx, 0, len(vx), 42) }},
		{"VXLANVNI", func() { v, _ := VXLANVNI(vx, 0, len(vx)); sink += int(v) }},
		{"DecapIPUDP", func() { _, _, sinkR = DecapIPUDP(in4, 0, len(in4)) }},
		{"FlowHash/v4", func() { sink += int(FlowHash(in4, 0, len(in4))) }},
		{"FlowHash/v6", func() { sink += int(FlowHash(in6, 0, len(in6))) }},
		{"SourcePort", func() { sink += int(SourcePort(uint32(sink), SourcePortMin, SourcePortMax)) }},
		{"InnerAddrs/v6", func() {
			s, _, _ := InnerAddrs(in6, 0, len(in6))
			if s.Is4() {
				sink++
			}
		}},
		{"CheckEncap", func() { sinkR = CheckEncap(b, off, end, MaxOverhead, 1500) }},
		{"DropReason.String", func() { sink += len(DropBadVNI.String()) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, c.fn); n != 0 {
				t.Errorf("%s allocates %v times per call", c.name, n)
			}
		})
	}
	_, _ = sink, sinkR
}
