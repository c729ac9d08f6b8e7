package encap

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// Builders of valid packets, each returned at offset 0 of its own slice.

func packetIPIP(tb testing.TB) []byte {
	h, _ := outer4(ProtoIPIP)
	b, off, end := withHeadroom(innerIPv4(tb))
	return b[PushIPv4(b, off, end, h):]
}

func packetSIT(tb testing.TB) []byte {
	h, _ := outer4(ProtoIPv6)
	b, off, end := withHeadroom(innerIPv6(tb))
	return b[PushIPv4(b, off, end, h):]
}

func packetIPv6UDP(tb testing.TB) []byte {
	h, _ := outer6(ProtoUDP)
	b, off, end := withHeadroom(innerIPv4(tb))
	s := PushUDP(b, off, end, 1000, PortIPUDP)
	SetUDPChecksum(b, s, end, outer6Src, outer6Dst)
	return b[PushIPv6(b, s, end, h):]
}

// datagramUDP is a UDP datagram with a valid checksum for src -> dst.
func datagramUDP(tb testing.TB, src, dst netip.Addr) []byte {
	b, off, end := withHeadroom(innerIPv4(tb))
	s := PushUDP(b, off, end, 1000, PortIPUDP)
	SetUDPChecksum(b, s, end, src, dst)
	return b[s:]
}

// payloadGRE is a GRE header and payload, as the outer IP payload.
func payloadGRE(h GREHeader, inner []byte) []byte {
	b, off, end := withHeadroom(inner)
	return b[PushGRE(b, off, end, &h):]
}

// payloadVXLAN is a VXLAN header and inner frame, as the UDP payload.
func payloadVXLAN(tb testing.TB, vni uint32) []byte {
	b, off, _ := withHeadroom(innerIPv4(tb))
	s := PushEthernet(b, off, innerMACDst, innerMACSrc, EtherTypeIPv4)
	return b[PushVXLAN(b, s, vni):]
}

// edit copies p and applies f, so each case mutates its own packet.
func edit(p []byte, f func(p []byte)) []byte {
	q := append([]byte(nil), p...)
	f(q)
	return q
}

// fixIPv4 recomputes the IPv4 header checksum at p[off:], so that a case
// reaches the check after the checksum.
func fixIPv4(p []byte, off int) {
	ihl := int(p[off]&0x0f) * 4
	p[off+10], p[off+11] = 0, 0
	binary.BigEndian.PutUint16(p[off+10:], IPv4Checksum(p[off:off+ihl]))
}

func r3(_, _ int, r DropReason) DropReason { return r }

func TestDropReasons(t *testing.T) {
	ipip, sit, v6udp := packetIPIP(t), packetSIT(t), packetIPv6UDP(t)
	udp4 := datagramUDP(t, outer4Src, outer4Dst)
	udp6 := datagramUDP(t, outer6Src, outer6Dst)
	in4, in6 := innerIPv4(t), innerIPv6(t)
	frame := innerFrame(t, in4, EtherTypeIPv4)
	vx := payloadVXLAN(t, 42)
	greKey := payloadGRE(GREHeader{Protocol: EtherTypeIPv4, HasKey: true, Key: 7}, in4)
	greCsum := payloadGRE(GREHeader{Protocol: EtherTypeIPv4, HasChecksum: true}, in4)
	grePlain := payloadGRE(GREHeader{Protocol: EtherTypeIPv4}, in4)
	var h4 IPv4Header
	var h6 IPv6Header
	var gh GREHeader
	parse4 := func(p []byte) DropReason { return r3(ParseIPv4(p, 0, len(p), &h4)) }
	parse6 := func(p []byte) DropReason { return r3(ParseIPv6(p, 0, len(p), &h6)) }
	ipipR := func(p []byte) DropReason { return r3(DecapIPIP(p, 0, len(p), &h4)) }
	sitR := func(p []byte) DropReason { return r3(DecapSIT(p, 0, len(p), &h4)) }
	udpR := func(p []byte, src, dst netip.Addr, verify bool) DropReason {
		_, _, _, _, r := ParseUDP(p, 0, len(p), src, dst, verify)
		return r
	}
	greR := func(p []byte, want GREExpect) DropReason { return r3(DecapGRE(p, 0, len(p), want, &gh)) }
	vxR := func(p []byte, vni uint32) DropReason {
		_, r := DecapVXLAN(p, 0, len(p), vni)
		return r
	}
	ipudpR := func(p []byte) DropReason { return r3(DecapIPUDP(p, 0, len(p))) }
	ethR := func(p []byte) DropReason {
		_, _, _, _, r := ParseEthernet(p, 0, len(p))
		return r
	}
	innerR := func(p []byte, v int) DropReason {
		_, r := CheckInner(p, 0, len(p), v)
		return r
	}
	noKey, key7 := GREExpect{}, GREExpect{HasKey: true, Key: 7}

	cases := []struct {
		name string
		got  DropReason
		want DropReason
	}{
		// ParseIPv4
		{"ipv4/nil", parse4(nil), DropTruncated},
		{"ipv4/19_bytes", parse4(ipip[:19]), DropTruncated},
		{"ipv4/negative_off", r3(ParseIPv4(ipip, -1, len(ipip), &h4)), DropTruncated},
		{"ipv4/off_after_end", r3(ParseIPv4(ipip, 30, 29, &h4)), DropTruncated},
		{"ipv4/end_beyond_buffer", r3(ParseIPv4(ipip, 0, len(ipip)+1, &h4)), DropTruncated},
		{"ipv4/huge_offsets", r3(ParseIPv4(ipip, 1<<62, 1<<62+100, &h4)), DropTruncated},
		{"ipv4/version_6", parse4(edit(ipip, func(p []byte) { p[0] = 0x65 })), DropBadVersion},
		{"ipv4/version_0", parse4(edit(ipip, func(p []byte) { p[0] = 0x05 })), DropBadVersion},
		{"ipv4/ihl_4", parse4(edit(ipip, func(p []byte) { p[0] = 0x44 })), DropBadHeaderLen},
		{"ipv4/ihl_0", parse4(edit(ipip, func(p []byte) { p[0] = 0x40 })), DropBadHeaderLen},
		{"ipv4/ihl_beyond_data", parse4(edit(ipip, func(p []byte) { p[0] = 0x4f })[:40]), DropBadHeaderLen},
		{"ipv4/total_below_ihl", parse4(edit(ipip, func(p []byte) { binary.BigEndian.PutUint16(p[2:], 19) })), DropBadHeaderLen},
		{"ipv4/total_beyond_data", parse4(ipip[:len(ipip)-1]), DropTruncated},
		{"ipv4/bad_checksum", parse4(edit(ipip, func(p []byte) { p[10] ^= 1 })), DropBadChecksum},
		{"ipv4/bad_checksum_ttl_changed", parse4(edit(ipip, func(p []byte) { p[8]-- })), DropBadChecksum},
		{"ipv4/more_fragments", parse4(edit(ipip, func(p []byte) { p[6] |= 0x20; fixIPv4(p, 0) })), DropFragment},
		{"ipv4/fragment_offset", parse4(edit(ipip, func(p []byte) { p[7] = 1; fixIPv4(p, 0) })), DropFragment},
		{"ipv4/fragment_offset_high_bits", parse4(edit(ipip, func(p []byte) { p[6] = 0x1f; fixIPv4(p, 0) })), DropFragment},
		{"ipv4/ok_df", parse4(ipip), OK},
		{"ipv4/ok_with_options", parse4(edit(ipip, func(p []byte) { p[0] = 0x46; fixIPv4(p, 0) })), OK},
		{"ipv4/ok_trailing_bytes", parse4(append(append([]byte(nil), ipip...), 0, 0, 0)), OK},

		// ParseIPv6
		{"ipv6/nil", parse6(nil), DropTruncated},
		{"ipv6/39_bytes", parse6(v6udp[:39]), DropTruncated},
		{"ipv6/negative_end", r3(ParseIPv6(v6udp, 0, -1, &h6)), DropTruncated},
		{"ipv6/version_4", parse6(edit(v6udp, func(p []byte) { p[0] = 0x4b })), DropBadVersion},
		{"ipv6/payload_beyond_data", parse6(v6udp[:len(v6udp)-1]), DropTruncated},
		{"ipv6/fragment_header", parse6(edit(v6udp, func(p []byte) { p[6] = 44 })), DropFragment},
		{"ipv6/ok_hop_by_hop_returned", parse6(edit(v6udp, func(p []byte) { p[6] = 0 })), OK},
		{"ipv6/ok", parse6(v6udp), OK},

		// ParseUDP
		{"udp/7_bytes", udpR(udp4[:7], outer4Src, outer4Dst, true), DropTruncated},
		{"udp/length_7", udpR(edit(udp4, func(p []byte) { binary.BigEndian.PutUint16(p[4:], 7) }), outer4Src, outer4Dst, false), DropTruncated},
		{"udp/length_beyond_data", udpR(udp4[:len(udp4)-1], outer4Src, outer4Dst, false), DropTruncated},
		{"udp/bad_checksum_v4", udpR(edit(udp4, func(p []byte) { p[len(p)-1] ^= 0x40 }), outer4Src, outer4Dst, true), DropBadChecksum},
		{"udp/bad_checksum_wrong_pseudo_header", udpR(udp4, outer4Src, outer4Src, true), DropBadChecksum},
		{"udp/bad_checksum_v6", udpR(edit(udp6, func(p []byte) { p[9] ^= 1 }), outer6Src, outer6Dst, true), DropBadChecksum},
		{"udp/ok_bad_checksum_not_verified", udpR(edit(udp4, func(p []byte) { p[9] ^= 1 }), outer4Src, outer4Dst, false), OK},
		{"udp/ok_zero_checksum_v4", udpR(edit(udp4, func(p []byte) { p[6], p[7] = 0, 0 }), outer4Src, outer4Dst, true), OK},
		{"udp/ok_zero_checksum_v6", udpR(edit(udp6, func(p []byte) { p[6], p[7] = 0, 0 }), outer6Src, outer6Dst, true), OK},
		{"udp/ok_v4", udpR(udp4, outer4Src, outer4Dst, true), OK},
		{"udp/ok_v6", udpR(udp6, outer6Src, outer6Dst, true), OK},

		// DecapIPIP / DecapSIT / CheckInner
		{"ipip/outer_truncated", ipipR(ipip[:10]), DropTruncated},
		{"ipip/outer_version", ipipR(edit(ipip, func(p []byte) { p[0] = 0x55 })), DropBadVersion},
		{"ipip/outer_fragment", ipipR(edit(ipip, func(p []byte) { p[6] |= 0x20; fixIPv4(p, 0) })), DropFragment},
		{"ipip/protocol_gre", ipipR(edit(ipip, func(p []byte) { p[9] = ProtoGRE; fixIPv4(p, 0) })), DropBadProtocol},
		{"ipip/sit_packet", ipipR(sit), DropBadProtocol},
		{"ipip/inner_version_6", ipipR(edit(ipip, func(p []byte) { p[20] = 0x65 })), DropBadInner},
		{"ipip/inner_ihl_4", ipipR(edit(ipip, func(p []byte) { p[20] = 0x44 })), DropBadInner},
		{"ipip/inner_total_beyond_outer", ipipR(edit(ipip, func(p []byte) { binary.BigEndian.PutUint16(p[22:], 200) })), DropBadInner},
		{"ipip/inner_total_below_ihl", ipipR(edit(ipip, func(p []byte) { binary.BigEndian.PutUint16(p[22:], 10) })), DropBadInner},
		{"ipip/inner_shorter_than_header", ipipR(edit(ipip[:30], func(p []byte) { binary.BigEndian.PutUint16(p[2:], 30); fixIPv4(p, 0) })), DropTruncated},
		{"ipip/no_inner", ipipR(edit(ipip[:20], func(p []byte) { binary.BigEndian.PutUint16(p[2:], 20); fixIPv4(p, 0) })), DropTruncated},
		{"ipip/ok", ipipR(ipip), OK},
		{"sit/ipip_packet", sitR(ipip), DropBadProtocol},
		{"sit/inner_version_4", sitR(edit(sit, func(p []byte) { p[20] = 0x45 })), DropBadInner},
		{"sit/inner_payload_beyond_outer", sitR(edit(sit, func(p []byte) { binary.BigEndian.PutUint16(p[24:], 1000) })), DropBadInner},
		{"sit/ok", sitR(sit), OK},
		{"inner/version_arg_5", innerR(edit(in4, func(p []byte) { p[0] = 0x55 }), 5), DropBadInner},
		{"inner/empty", innerR(nil, 4), DropTruncated},
		{"inner/v6_39_bytes", innerR(in6[:39], 6), DropTruncated},

		// DecapGRE
		{"gre/3_bytes", greR(grePlain[:3], noKey), DropTruncated},
		{"gre/version_1", greR(edit(grePlain, func(p []byte) { p[1] = 1 }), noKey), DropBadFlags},
		{"gre/version_7", greR(edit(grePlain, func(p []byte) { p[1] = 7 }), noKey), DropBadFlags},
		{"gre/routing_bit", greR(edit(grePlain, func(p []byte) { p[0] |= 0x40 }), noKey), DropBadFlags},
		{"gre/strict_source_route_bit", greR(edit(grePlain, func(p []byte) { p[0] |= 0x08 }), noKey), DropBadFlags},
		{"gre/recursion_bit", greR(edit(grePlain, func(p []byte) { p[0] |= 0x04 }), noKey), DropBadFlags},
		{"gre/ok_reserved0_bits_6_to_12_ignored", greR(edit(grePlain, func(p []byte) { p[0] |= 0x03; p[1] = 0xf8 }), noKey), OK},
		{"gre/checksum_field_missing", greR(edit(grePlain[:6], func(p []byte) { p[0] |= 0x80 }), noKey), DropTruncated},
		{"gre/key_field_missing", greR(greKey[:7], key7), DropTruncated},
		{"gre/bad_checksum", greR(edit(greCsum, func(p []byte) { p[len(p)-1]++ }), noKey), DropBadChecksum},
		{"gre/bad_checksum_field", greR(edit(greCsum, func(p []byte) { p[5]++ }), noKey), DropBadChecksum},
		{"gre/key_missing", greR(grePlain, key7), DropBadKey},
		{"gre/key_unexpected", greR(greKey, noKey), DropBadKey},
		{"gre/key_wrong", greR(greKey, GREExpect{HasKey: true, Key: 8}), DropBadKey},
		{"gre/protocol_arp", greR(edit(grePlain, func(p []byte) { binary.BigEndian.PutUint16(p[2:], EtherTypeARP) }), noKey), DropBadProtocol},
		{"gre/protocol_zero", greR(edit(grePlain, func(p []byte) { p[2], p[3] = 0, 0 }), noKey), DropBadProtocol},
		{"gre/inner_v4_declared_v6", greR(edit(grePlain, func(p []byte) { binary.BigEndian.PutUint16(p[2:], EtherTypeIPv6) }), noKey), DropBadInner},
		{"gre/inner_v6_declared_v4", greR(payloadGRE(GREHeader{Protocol: EtherTypeIPv4}, in6), noKey), DropBadInner},
		{"gre/inner_too_short", greR(grePlain[:4+19], noKey), DropTruncated},
		{"gre/inner_total_beyond", greR(grePlain[:len(grePlain)-1], noKey), DropBadInner},
		{"gre/teb_frame_13_bytes", greR(payloadGRE(GREHeader{Protocol: EtherTypeTEB}, frame[:13]), noKey), DropTruncated},
		{"gre/ok_teb", greR(payloadGRE(GREHeader{Protocol: EtherTypeTEB}, frame), noKey), OK},
		{"gre/ok_key", greR(greKey, key7), OK},
		{"gre/ok_checksum", greR(greCsum, noKey), OK},

		// DecapVXLAN
		{"vxlan/7_bytes", vxR(vx[:7], 42), DropTruncated},
		{"vxlan/no_I_flag", vxR(edit(vx, func(p []byte) { p[0] = 0 }), 42), DropBadFlags},
		{"vxlan/only_other_flags", vxR(edit(vx, func(p []byte) { p[0] = 0xf7 }), 42), DropBadFlags},
		{"vxlan/wrong_vni", vxR(vx, 43), DropBadVNI},
		{"vxlan/vni_above_24_bits", vxR(vx, 42|1<<24), DropBadVNI},
		{"vxlan/no_inner_frame", vxR(vx[:8], 42), DropTruncated},
		{"vxlan/inner_frame_13_bytes", vxR(vx[:8+13], 42), DropTruncated},
		{"vxlan/ok_reserved_and_gbp_bits_ignored", vxR(edit(vx, func(p []byte) { p[0], p[1], p[2], p[3], p[7] = 0xff, 0xff, 0xff, 0xff, 0xff }), 42), OK},
		{"vxlan/ok", vxR(vx, 42), OK},

		// DecapIPUDP
		{"ipudp/empty", ipudpR(nil), DropTruncated},
		{"ipudp/version_5", ipudpR(edit(in4, func(p []byte) { p[0] = 0x55 })), DropBadInner},
		{"ipudp/version_0", ipudpR(make([]byte, 60)), DropBadInner},
		{"ipudp/v4_19_bytes", ipudpR(in4[:19]), DropTruncated},
		{"ipudp/v6_39_bytes", ipudpR(in6[:39]), DropTruncated},
		{"ipudp/v4_total_beyond", ipudpR(in4[:len(in4)-1]), DropBadInner},
		{"ipudp/ok_v4", ipudpR(in4), OK},
		{"ipudp/ok_v6", ipudpR(in6), OK},

		// ParseEthernet
		{"ethernet/13_bytes", ethR(frame[:13]), DropTruncated},
		{"ethernet/ok_header_only", ethR(frame[:14]), OK},

		// CheckEncap
		{"check_encap/bad_window", CheckEncap(make([]byte, 100), 50, 101, 50, 1500), DropTruncated},
		{"check_encap/no_headroom", CheckEncap(make([]byte, 100), 49, 100, 50, 1500), DropOversize},
		{"check_encap/over_mtu", CheckEncap(make([]byte, 2000), 50, 1501, 50, 1500), DropOversize},
		{"check_encap/ok_exactly_mtu", CheckEncap(make([]byte, 2000), 50, 1500, 50, 1500), OK},
	}

	seen := make(map[DropReason]bool)
	for _, c := range cases {
		seen[c.got] = true
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
	for r := OK; r < NumDropReasons; r++ {
		if !seen[r] {
			t.Errorf("no case produces %v", r)
		}
	}
}

// TestTruncatedAtEveryLength cuts valid packets at every length: a whole
// outer packet whose length field no longer fits must say DropTruncated;
// headers without a length field must say DropTruncated while the header
// itself is cut, and never OK before the packet is complete.
func TestTruncatedAtEveryLength(t *testing.T) {
	var h4 IPv4Header
	var h6 IPv6Header
	var gh GREHeader
	in4 := innerIPv4(t)
	whole := []struct {
		name string
		p    []byte
		fn   func(p []byte) DropReason
	}{
		{"ipip", packetIPIP(t), func(p []byte) DropReason { return r3(DecapIPIP(p, 0, len(p), &h4)) }},
		{"sit", packetSIT(t), func(p []byte) DropReason { return r3(DecapSIT(p, 0, len(p), &h4)) }},
		{"ipv6", packetIPv6UDP(t), func(p []byte) DropReason { return r3(ParseIPv6(p, 0, len(p), &h6)) }},
		{"udp", datagramUDP(t, outer4Src, outer4Dst), func(p []byte) DropReason {
			_, _, _, _, r := ParseUDP(p, 0, len(p), outer4Src, outer4Dst, true)
			return r
		}},
	}
	for _, c := range whole {
		t.Run(c.name, func(t *testing.T) {
			if r := c.fn(c.p); r != OK {
				t.Fatalf("whole packet: %v", r)
			}
			for n := 0; n < len(c.p); n++ {
				if r := c.fn(c.p[:n]); r != DropTruncated {
					t.Fatalf("cut at %d: %v, want truncated", n, r)
				}
			}
		})
	}

	headers := []struct {
		name   string
		p      []byte
		hdrLen int
		fn     func(p []byte) DropReason
	}{
		{"gre_plain", payloadGRE(GREHeader{Protocol: EtherTypeIPv4}, in4), 4, nil},
		{"gre_csum_key_seq", payloadGRE(GREHeader{Protocol: EtherTypeIPv4, HasChecksum: true, HasKey: true, Key: 9, HasSeq: true}, in4), 16, nil},
		{"gre_teb", payloadGRE(GREHeader{Protocol: EtherTypeTEB, HasKey: true, Key: 9}, innerFrame(t, in4, EtherTypeIPv4)), 8 + EthernetLen, nil},
		{"vxlan", payloadVXLAN(t, 1), VXLANLen + EthernetLen, func(p []byte) DropReason {
			_, r := DecapVXLAN(p, 0, len(p), 1)
			return r
		}},
		{"ethernet", innerFrame(t, in4, EtherTypeIPv4), EthernetLen, func(p []byte) DropReason {
			_, _, _, _, r := ParseEthernet(p, 0, len(p))
			return r
		}},
		{"ipudp", in4, IPv4Len, func(p []byte) DropReason { return r3(DecapIPUDP(p, 0, len(p))) }},
	}
	for _, c := range headers {
		fn := c.fn
		if fn == nil {
			want := GREExpect{}
			if c.p[0]&greFlagK != 0 {
				want = GREExpect{HasKey: true, Key: 9}
			}
			fn = func(p []byte) DropReason { return r3(DecapGRE(p, 0, len(p), want, &gh)) }
		}
		t.Run(c.name, func(t *testing.T) {
			if r := fn(c.p); r != OK {
				t.Fatalf("whole packet: %v", r)
			}
			for n := 0; n < len(c.p); n++ {
				r := fn(c.p[:n])
				if n < c.hdrLen && r != DropTruncated {
					t.Fatalf("cut at %d inside the header: %v, want truncated", n, r)
				}
				// A frame (VXLAN, TEB, Ethernet) has no length of its own,
				// so a cut after its header is undetectable here.
				if r == OK && c.name != "vxlan" && c.name != "gre_teb" && c.name != "ethernet" {
					t.Fatalf("cut at %d: OK", n)
				}
			}
		})
	}
}

func TestDropReasonString(t *testing.T) {
	want := []string{"ok", "truncated", "bad_version", "bad_header_len", "bad_checksum", "fragment",
		"bad_protocol", "bad_flags", "bad_vni", "bad_key", "bad_inner", "oversize"}
	if len(want) != int(NumDropReasons) {
		t.Fatalf("%d names for %d reasons", len(want), NumDropReasons)
	}
	for i, w := range want {
		if got := DropReason(i).String(); got != w {
			t.Errorf("DropReason(%d) = %q, want %q", i, got, w)
		}
	}
	if got := NumDropReasons.String(); got != "unknown" {
		t.Errorf("NumDropReasons.String() = %q", got)
	}
	if got := DropReason(255).String(); got != "unknown" {
		t.Errorf("DropReason(255).String() = %q", got)
	}
}
