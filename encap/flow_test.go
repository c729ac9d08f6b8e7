package encap

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestFlowHash(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	otherPort := edit(in4, func(p []byte) { p[21]++ }) // UDP source port
	otherDst := edit(in4, func(p []byte) { p[19]++ })
	firstFrag := edit(in4, func(p []byte) { p[6] |= 0x20 })                                  // MF: ports present
	laterFrag := edit(in4, func(p []byte) { p[6], p[7] = 0, 185; copy(p[20:], "garbage!") }) // offset: no ports
	v6OtherPort := edit(in6, func(p []byte) { p[41]++ })

	h := func(p []byte) uint32 { return FlowHash(p, 0, len(p)) }
	if h(in4) == 0 || h(in6) == 0 {
		t.Fatal("valid packet hashed to 0")
	}
	if h(in4) != h(in4) || h(in4) != FlowHash(append([]byte{9, 9}, in4...), 2, len(in4)+2) {
		t.Error("hash not stable across calls and offsets")
	}
	for name, p := range map[string][]byte{"src_port": otherPort, "dst_addr": otherDst} {
		if h(p) == h(in4) {
			t.Errorf("changing %s did not change the hash", name)
		}
	}
	if h(v6OtherPort) == h(in6) {
		t.Error("changing the IPv6 TCP port did not change the hash")
	}
	if h(firstFrag) != h(laterFrag) {
		t.Error("fragments of one datagram hash differently; they must share the outer source port")
	}
	for name, p := range map[string][]byte{"nil": nil, "version_5": {0x55}, "v4_19_bytes": in4[:19], "v6_39_bytes": in6[:39], "ihl_4": edit(in4, func(p []byte) { p[0] = 0x44 })} {
		if got := h(p); got != 0 {
			t.Errorf("%s: hash %#x, want 0", name, got)
		}
	}
	if FlowHash(in4, -1, 10) != 0 || FlowHash(in4, 0, len(in4)+1) != 0 {
		t.Error("out-of-range offsets must hash to 0")
	}
}

// TestFlowHashSpread checks that the ports chosen for many flows fill the
// range evenly enough for ECMP: 64K flows over 16 buckets.
func TestFlowHashSpread(t *testing.T) {
	p := innerIPv4(t)
	var buckets [16]int
	const flows = 1 << 16
	for i := range flows {
		binary.BigEndian.PutUint16(p[20:], uint16(i)) // source port
		port := SourcePort(FlowHash(p, 0, len(p)), SourcePortMin, SourcePortMax)
		buckets[(int(port)-SourcePortMin)*16/(SourcePortMax-SourcePortMin+1)]++
	}
	for i, n := range buckets {
		if n < flows/16*9/10 || n > flows/16*11/10 {
			t.Errorf("bucket %d holds %d of %d flows", i, n, flows)
		}
	}
}

func TestSourcePort(t *testing.T) {
	cases := []struct {
		hash     uint32
		min, max uint16
		want     uint16
	}{
		{0, SourcePortMin, SourcePortMax, SourcePortMin},
		{0xffffffff, SourcePortMin, SourcePortMax, SourcePortMax},
		{0x80000000, 0, 65535, 32768},
		{0xffffffff, 0, 65535, 65535},
		{12345, 4789, 4789, 4789},
		{0xffffffff, 61000, 32768, 61000}, // swapped bounds
	}
	for _, c := range cases {
		if got := SourcePort(c.hash, c.min, c.max); got != c.want {
			t.Errorf("SourcePort(%#x, %d, %d) = %d, want %d", c.hash, c.min, c.max, got, c.want)
		}
	}
}

func TestInnerAddrs(t *testing.T) {
	in4, in6 := innerIPv4(t), innerIPv6(t)
	cases := []struct {
		name     string
		p        []byte
		src, dst netip.Addr
		ok       bool
	}{
		{"v4", in4, netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.2.9"), true},
		{"v6", in6, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), true},
		{"v4_short", in4[:19], netip.Addr{}, netip.Addr{}, false},
		{"v6_short", in6[:39], netip.Addr{}, netip.Addr{}, false},
		{"empty", nil, netip.Addr{}, netip.Addr{}, false},
		{"version_0", make([]byte, 40), netip.Addr{}, netip.Addr{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst, ok := InnerAddrs(c.p, 0, len(c.p))
			if src != c.src || dst != c.dst || ok != c.ok {
				t.Errorf("got %v %v %v, want %v %v %v", src, dst, ok, c.src, c.dst, c.ok)
			}
		})
	}
}

// TestParseTrimsTrailingBytes checks that padding after a packet's own
// length (Ethernet minimum frame padding) is excluded from the payload.
func TestParseTrimsTrailingBytes(t *testing.T) {
	ipip := packetIPIP(t)
	padded := append(append([]byte(nil), ipip...), 0, 0, 0, 0)
	var h IPv4Header
	payOff, payEnd, r := ParseIPv4(padded, 0, len(padded), &h)
	if r != OK || payOff != IPv4Len || payEnd != len(ipip) {
		t.Errorf("ParseIPv4 = %d, %d, %v; want %d, %d, ok", payOff, payEnd, r, IPv4Len, len(ipip))
	}
	io, ie, r := DecapIPUDP(padded, IPv4Len, len(padded))
	if r != OK || io != IPv4Len || ie != len(ipip) {
		t.Errorf("DecapIPUDP = %d, %d, %v", io, ie, r)
	}
	v6 := packetIPv6UDP(t)
	v6p := append(append([]byte(nil), v6...), 1, 2, 3)
	var h6 IPv6Header
	if payOff, payEnd, r := ParseIPv6(v6p, 0, len(v6p), &h6); r != OK || payOff != IPv6Len || payEnd != len(v6) {
		t.Errorf("ParseIPv6 = %d, %d, %v", payOff, payEnd, r)
	}
	udp := datagramUDP(t, outer4Src, outer4Dst)
	udpp := append(append([]byte(nil), udp...), 7)
	if sp, dp, po, pe, r := ParseUDP(udpp, 0, len(udpp), outer4Src, outer4Dst, true); r != OK || po != UDPLen || pe != len(udp) || sp != 1000 || dp != PortIPUDP {
		t.Errorf("ParseUDP = %d %d %d %d %v", sp, dp, po, pe, r)
	}
}

// TestVXLANVNI checks the VNI peek used to pick a per-VNI configuration.
func TestVXLANVNI(t *testing.T) {
	vx := payloadVXLAN(t, 0xabcdef)
	if vni, ok := VXLANVNI(vx, 0, len(vx)); !ok || vni != 0xabcdef {
		t.Errorf("VXLANVNI = %#x, %v", vni, ok)
	}
	if _, ok := VXLANVNI(vx, 0, 7); ok {
		t.Error("VXLANVNI accepted 7 bytes")
	}
	if _, ok := VXLANVNI(edit(vx, func(p []byte) { p[0] = 0 }), 0, len(vx)); ok {
		t.Error("VXLANVNI accepted a header without the I flag")
	}
}
