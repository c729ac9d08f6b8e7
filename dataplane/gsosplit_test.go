package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/encap"
)

// superPacket builds what a TUN device with offloads hands over for a
// TCP (or UDP) send of pay bytes: one packet with lengths for the whole,
// the checksum field holding the pseudo-header sum, and its virtio header.
func superPacket(t testing.TB, v6, udp bool, pay, mss int, flags uint8) ([]byte, virtioHdr, []byte) {
	t.Helper()
	payload := make([]byte, pay)
	for i := range payload {
		payload[i] = byte(i*7 + i>>9)
	}
	var ipl gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64,
			SrcIP: net.ParseIP("fd00:200::1"), DstIP: net.ParseIP("fd00:200::2")}
		if udp {
			ip.NextHeader = layers.IPProtocolUDP
		}
		ipl, nl = ip, ip
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 100, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IP{10, 200, 0, 1}, DstIP: net.IP{10, 200, 0, 2}}
		if udp {
			ip.Protocol = layers.IPProtocolUDP
		}
		ipl, nl = ip, ip
	}
	var l4 gopacket.SerializableLayer
	if udp {
		u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
		u.SetNetworkLayerForChecksum(nl)
		l4 = u
	} else {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1 << 31, Ack: 9, Window: 100,
			ACK: flags&tcpFlagACK != 0, PSH: flags&tcpFlagPSH != 0, FIN: flags&tcpFlagFIN != 0, CWR: flags&tcpFlagCWR != 0,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
		tcp.SetNetworkLayerForChecksum(nl)
		l4 = tcp
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ipl, l4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	p := append([]byte(nil), buf.Bytes()...)
	iphl := 20
	if v6 {
		iphl = 40
	}
	h := virtioHdr{flags: virtioNeedsCsum, gsoType: virtioGSOTCPv4, csumStart: iphl, csumOffset: 16, gsoSize: mss}
	switch {
	case udp:
		h.gsoType, h.csumOffset = virtioGSOUDPL4, 6
	case v6:
		h.gsoType = virtioGSOTCPv6
	}
	proto := encap.ProtoTCP
	if udp {
		proto = encap.ProtoUDP
	}
	acc := encap.PseudoHeaderSum(netipOf(p, v6, true), netipOf(p, v6, false), uint8(proto), len(p)-iphl)
	binary.BigEndian.PutUint16(p[iphl+h.csumOffset:], encap.Fold(acc))
	return p, h, payload
}

// netipOf returns the source (src) or destination address of packet p.
func netipOf(p []byte, v6, src bool) netip.Addr {
	switch {
	case v6 && src:
		return netip.AddrFrom16([16]byte(p[8:24]))
	case v6:
		return netip.AddrFrom16([16]byte(p[24:40]))
	case src:
		return netip.AddrFrom4([4]byte(p[12:16]))
	}
	return netip.AddrFrom4([4]byte(p[16:20]))
}

func TestSplitSuper(t *testing.T) {
	for _, tc := range []struct {
		name          string
		v6, udp       bool
		pay, mss      int
		flags         uint8
		wantSegments  int
		lastFlagsWant uint8
	}{
		{"tcp4", false, false, 10000, 1400, tcpFlagACK | tcpFlagPSH | tcpFlagCWR, 8, tcpFlagACK | tcpFlagPSH},
		{"tcp4 fin", false, false, 2800, 1400, tcpFlagACK | tcpFlagFIN, 2, tcpFlagACK | tcpFlagFIN},
		{"tcp6", true, false, 63000, 1380, tcpFlagACK, 46, tcpFlagACK},
		{"udp4", false, true, 5000, 1200, 0, 5, 0},
		{"udp6", true, true, 2400, 1200, 0, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, h, payload := superPacket(t, tc.v6, tc.udp, tc.pay, tc.mss, tc.flags)
			bufs := make([][]byte, 64)
			for i := range bufs {
				bufs[i] = make([]byte, Headroom+1500)
			}
			sizes := make([]int, 64)
			n, err := splitSuper(in, h, 0, bufs, sizes, Headroom)
			if err != nil || n != tc.wantSegments {
				t.Fatalf("split: %d segments, %v; want %d", n, err, tc.wantSegments)
			}
			var got []byte
			first := layers.LayerTypeIPv4
			if tc.v6 {
				first = layers.LayerTypeIPv6
			}
			for i := range n {
				seg := bufs[i][Headroom : Headroom+sizes[i]]
				pk := gopacket.NewPacket(seg, first, gopacket.Default)
				if el := pk.ErrorLayer(); el != nil {
					t.Fatalf("segment %d: %v", i, el.Error())
				}
				iphl := 20
				if tc.v6 {
					iphl = 40
					if ip := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6); int(ip.Length) != len(seg)-40 {
						t.Fatalf("segment %d: payload length %d of %d", i, ip.Length, len(seg))
					}
				} else {
					ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
					if int(ip.Length) != len(seg) || encap.IPv4Checksum(seg[:20]) != 0 || ip.Id != uint16(100+i) {
						t.Fatalf("segment %d: length %d of %d, id %d, header checksum ok %v", i, ip.Length, len(seg), ip.Id, encap.IPv4Checksum(seg[:20]) == 0)
					}
				}
				sum := encap.Fold(encap.Sum(seg[iphl:], encap.PseudoHeaderSum(netipOf(seg, tc.v6, true), netipOf(seg, tc.v6, false),
					map[bool]uint8{true: encap.ProtoUDP, false: encap.ProtoTCP}[tc.udp], len(seg)-iphl)))
				if sum != 0xffff {
					t.Fatalf("segment %d: transport checksum does not verify", i)
				}
				if tc.udp {
					u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
					if int(u.Length) != len(seg)-iphl {
						t.Fatalf("segment %d: UDP length %d", i, u.Length)
					}
					got = append(got, u.Payload...)
					continue
				}
				tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if tcp.Seq != 1<<31+uint32(i*tc.mss) {
					t.Fatalf("segment %d: seq %d", i, tcp.Seq)
				}
				f := seg[iphl+13]
				want := tc.flags &^ (tcpFlagPSH | tcpFlagFIN)
				if i > 0 {
					want &^= tcpFlagCWR
				}
				if i == n-1 {
					want = tc.lastFlagsWant
				}
				if f != want {
					t.Fatalf("segment %d: flags %#x, want %#x", i, f, want)
				}
				got = append(got, tcp.Payload...)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("payload differs: %d bytes vs %d", len(got), len(payload))
			}
		})
	}
}

func TestSplitSuperSingleNeedsCsum(t *testing.T) {
	in, h, _ := superPacket(t, false, false, 300, 1400, tcpFlagACK)
	h.gsoType = virtioGSONone
	bufs, sizes := [][]byte{make([]byte, Headroom+1500)}, []int{0}
	if n, err := splitSuper(in, h, 0, bufs, sizes, Headroom); n != 1 || err != nil {
		t.Fatalf("%d, %v", n, err)
	}
	seg := bufs[0][Headroom : Headroom+sizes[0]]
	s := parseSeg(seg, false)
	if !tcpChecksumOK(seg, &s) {
		t.Fatal("completed checksum does not verify")
	}
}

func TestSplitSuperRejects(t *testing.T) {
	in, h, _ := superPacket(t, false, false, 10000, 1400, tcpFlagACK)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	sizes := make([]int, 4)
	if _, err := splitSuper(in, h, 0, bufs, sizes, Headroom); err != errTooManySegments {
		t.Fatalf("8 segments into 4 buffers: %v", err)
	}
	bad := h
	bad.csumStart = 24 // not the IPv4 header length
	if _, err := splitSuper(in, bad, 0, bufs, sizes, Headroom); err != errBadSuper {
		t.Fatalf("csum_start 24: %v", err)
	}
	bad = h
	bad.gsoType = virtioGSOTCPv6 // IPv4 packet
	if _, err := splitSuper(in, bad, 0, bufs, sizes, Headroom); err != errBadSuper {
		t.Fatalf("v6 GSO on IPv4: %v", err)
	}
	bad = h
	bad.gsoSize = 0
	if _, err := splitSuper(in, bad, 0, bufs, sizes, Headroom); err != errBadSuper {
		t.Fatalf("gso_size 0: %v", err)
	}
}

func TestSplitSuperAllocatesNothing(t *testing.T) {
	in, h, _ := superPacket(t, false, false, 60000, 1400, tcpFlagACK)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	sizes := make([]int, 64)
	if a := testing.AllocsPerRun(50, func() { splitSuper(in, h, 0, bufs, sizes, Headroom) }); a != 0 {
		t.Fatalf("splitSuper allocates %.1f", a)
	}
}

func BenchmarkSplitSuper(b *testing.B) {
	in, h, _ := superPacket(b, false, false, 64000, 1400, tcpFlagACK)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	sizes := make([]int, 64)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		splitSuper(in, h, 0, bufs, sizes, Headroom)
	}
}

// FuzzSplitSuper feeds arbitrary virtio headers and packets: no panic, no
// segment past its buffer.
func FuzzSplitSuper(f *testing.F) {
	in, h, _ := superPacket(f, false, false, 3000, 1400, tcpFlagACK)
	vh := make([]byte, virtioHdrLen)
	vh[0], vh[1] = h.flags, h.gsoType
	binary.LittleEndian.PutUint16(vh[4:], uint16(h.gsoSize))
	binary.LittleEndian.PutUint16(vh[6:], uint16(h.csumStart))
	binary.LittleEndian.PutUint16(vh[8:], uint16(h.csumOffset))
	f.Add(append(vh, in...))
	in6, h6, _ := superPacket(f, true, true, 2500, 1200, 0)
	vh6 := make([]byte, virtioHdrLen)
	vh6[0], vh6[1] = h6.flags, h6.gsoType
	binary.LittleEndian.PutUint16(vh6[4:], uint16(h6.gsoSize))
	binary.LittleEndian.PutUint16(vh6[6:], uint16(h6.csumStart))
	binary.LittleEndian.PutUint16(vh6[8:], uint16(h6.csumOffset))
	f.Add(append(vh6, in6...))
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	sizes := make([]int, 16)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < virtioHdrLen {
			return
		}
		l2 := 14 * int(data[0]&0x40>>6) // TUN or TAP, from a bit of the flags byte
		n, err := splitSuper(data[virtioHdrLen:], parseVirtioHdr(data), l2, bufs, sizes, Headroom)
		if err != nil && n != 0 {
			t.Fatalf("error %v with %d segments", err, n)
		}
		for i := range n {
			if sizes[i] > len(bufs[i])-Headroom || sizes[i] < 0 {
				t.Fatalf("segment %d of %d bytes", i, sizes[i])
			}
		}
	})
}

// TestVnetTAPFrames: TAP queues carry an Ethernet header in front of the
// IP packet; split repeats it on every segment, and coalescing merges
// only frames with equal Ethernet headers and offsets the virtio header
// by it.
func TestVnetTAPFrames(t *testing.T) {
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}
	in, h, payload := superPacket(t, false, false, 4000, 1400, tcpFlagACK|tcpFlagPSH)
	frame := append(append([]byte(nil), eth...), in...)
	h.csumStart += 14
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1514)
	}
	sizes := make([]int, 8)
	n, err := splitSuper(frame, h, 14, bufs, sizes, Headroom)
	if err != nil || n != 3 {
		t.Fatalf("split: %d, %v", n, err)
	}
	var frames [][]byte
	var got []byte
	for i := range n {
		f := bufs[i][Headroom : Headroom+sizes[i]]
		if !bytes.Equal(f[:14], eth) {
			t.Fatalf("segment %d: Ethernet header % x", i, f[:14])
		}
		s := parseSeg(f[14:], false)
		if !s.ok || !tcpChecksumOK(f[14:], &s) {
			t.Fatalf("segment %d: not a valid TCP segment", i)
		}
		got = append(got, f[14+s.hl:]...)
		frames = append(frames, append([]byte(nil), f...))
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload differs")
	}
	other := make([][]byte, n)
	for i := range frames {
		other[i] = append([]byte(nil), frames[i]...)
	}
	segs := make([]tcpSeg, n)
	if ends := coalesceRuns(frames, segs, nil, 14, 65535, false); !equalInts(ends, []int{3}) {
		t.Fatalf("runs %v, want [3]", ends)
	}
	var vh [virtioHdrLen]byte
	superHeader(frames[0][14:], &segs[0], 4000, segs[0].pay, true, 14, &vh)
	if binary.LittleEndian.Uint16(vh[6:]) != 14+20 || binary.LittleEndian.Uint16(vh[2:]) != uint16(14+segs[0].hl) {
		t.Fatalf("virtio header % x", vh)
	}
	other[2][0] ^= 0x10 // another destination MAC
	if ends := coalesceRuns(other, segs, nil, 14, 65535, false); !equalInts(ends, []int{2, 3}) {
		t.Fatalf("runs %v, want [2 3]", ends)
	}
}
