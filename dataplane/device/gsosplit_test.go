package device

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/encap"
	"tunnelplane/ring"
)

// superPacket is devicetest.SuperPacket with the virtio header a TUN
// device with offloads puts in front of it (segments of mss).
func superPacket(t testing.TB, v6, udp bool, pay, mss int, flags uint8) ([]byte, VirtioHdr, []byte) {
	t.Helper()
	p, payload := devicetest.SuperPacket(t, v6, udp, pay, flags)
	iphl := 20
	if v6 {
		iphl = 40
	}
	h := VirtioHdr{Flags: VirtioNeedsCsum, GSOType: VirtioGSOTCPv4, CsumStart: iphl, CsumOffset: 16, GSOSize: mss}
	switch {
	case udp:
		h.GSOType, h.CsumOffset = VirtioGSOUDPL4, 6
	case v6:
		h.GSOType = VirtioGSOTCPv6
	}
	return p, h, payload
}

// headroom is the data plane's: where reads and splits put a packet.
const headroom = ring.Headroom

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
				bufs[i] = make([]byte, headroom+1500)
			}
			sizes := make([]int, 64)
			n, err := SplitSuper(in, h, 0, bufs, sizes, headroom)
			if err != nil || n != tc.wantSegments {
				t.Fatalf("split: %d segments, %v; want %d", n, err, tc.wantSegments)
			}
			var got []byte
			first := layers.LayerTypeIPv4
			if tc.v6 {
				first = layers.LayerTypeIPv6
			}
			for i := range n {
				seg := bufs[i][headroom : headroom+sizes[i]]
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
				sum := encap.Fold(encap.Sum(seg[iphl:], encap.PseudoHeaderSum(devicetest.Addr(seg, tc.v6, true), devicetest.Addr(seg, tc.v6, false),
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
	h.GSOType = VirtioGSONone
	bufs, sizes := [][]byte{make([]byte, headroom+1500)}, []int{0}
	if n, err := SplitSuper(in, h, 0, bufs, sizes, headroom); n != 1 || err != nil {
		t.Fatalf("%d, %v", n, err)
	}
	seg := bufs[0][headroom : headroom+sizes[0]]
	s := parseSeg(seg, false)
	if !tcpChecksumOK(seg, &s) {
		t.Fatal("completed checksum does not verify")
	}
}

func TestSplitSuperRejects(t *testing.T) {
	in, h, _ := superPacket(t, false, false, 10000, 1400, tcpFlagACK)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+1500)
	}
	sizes := make([]int, 4)
	if _, err := SplitSuper(in, h, 0, bufs, sizes, headroom); err != ErrTooManySegments {
		t.Fatalf("8 segments into 4 buffers: %v", err)
	}
	bad := h
	bad.CsumStart = 24 // not the IPv4 header length
	if _, err := SplitSuper(in, bad, 0, bufs, sizes, headroom); err != ErrBadSuper {
		t.Fatalf("csum_start 24: %v", err)
	}
	bad = h
	bad.GSOType = VirtioGSOTCPv6 // IPv4 packet
	if _, err := SplitSuper(in, bad, 0, bufs, sizes, headroom); err != ErrBadSuper {
		t.Fatalf("v6 GSO on IPv4: %v", err)
	}
	bad = h
	bad.GSOSize = 0
	if _, err := SplitSuper(in, bad, 0, bufs, sizes, headroom); err != ErrBadSuper {
		t.Fatalf("gso_size 0: %v", err)
	}
}

func TestSplitSuperAllocatesNothing(t *testing.T) {
	in, h, _ := superPacket(t, false, false, 60000, 1400, tcpFlagACK)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+1500)
	}
	sizes := make([]int, 64)
	if a := testing.AllocsPerRun(50, func() { SplitSuper(in, h, 0, bufs, sizes, headroom) }); a != 0 {
		t.Fatalf("SplitSuper allocates %.1f", a)
	}
}

func BenchmarkSplitSuper(b *testing.B) {
	in, h, _ := superPacket(b, false, false, 64000, 1400, tcpFlagACK)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+1500)
	}
	sizes := make([]int, 64)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		SplitSuper(in, h, 0, bufs, sizes, headroom)
	}
}

// FuzzSplitSuper feeds arbitrary virtio headers and packets: no panic, no
// segment past its buffer.
func FuzzSplitSuper(f *testing.F) {
	in, h, _ := superPacket(f, false, false, 3000, 1400, tcpFlagACK)
	vh := make([]byte, VirtioHdrLen)
	vh[0], vh[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(vh[4:], uint16(h.GSOSize))
	binary.LittleEndian.PutUint16(vh[6:], uint16(h.CsumStart))
	binary.LittleEndian.PutUint16(vh[8:], uint16(h.CsumOffset))
	f.Add(append(vh, in...))
	in6, h6, _ := superPacket(f, true, true, 2500, 1200, 0)
	vh6 := make([]byte, VirtioHdrLen)
	vh6[0], vh6[1] = h6.Flags, h6.GSOType
	binary.LittleEndian.PutUint16(vh6[4:], uint16(h6.GSOSize))
	binary.LittleEndian.PutUint16(vh6[6:], uint16(h6.CsumStart))
	binary.LittleEndian.PutUint16(vh6[8:], uint16(h6.CsumOffset))
	f.Add(append(vh6, in6...))
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+1500)
	}
	sizes := make([]int, 16)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < VirtioHdrLen {
			return
		}
		l2 := 14 * int(data[0]&0x40>>6) // TUN or TAP, from a bit of the flags byte
		n, err := SplitSuper(data[VirtioHdrLen:], ParseVirtioHdr(data), l2, bufs, sizes, headroom)
		if err != nil && n != 0 {
			t.Fatalf("error %v with %d segments", err, n)
		}
		for i := range n {
			if sizes[i] > len(bufs[i])-headroom || sizes[i] < 0 {
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
	h.CsumStart += 14
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+1514)
	}
	sizes := make([]int, 8)
	n, err := SplitSuper(frame, h, 14, bufs, sizes, headroom)
	if err != nil || n != 3 {
		t.Fatalf("split: %d, %v", n, err)
	}
	var frames [][]byte
	var got []byte
	for i := range n {
		f := bufs[i][headroom : headroom+sizes[i]]
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
	var vh [VirtioHdrLen]byte
	superHeader(frames[0][14:], &segs[0], 4000, segs[0].pay, true, 14, &vh)
	if binary.LittleEndian.Uint16(vh[6:]) != 14+20 || binary.LittleEndian.Uint16(vh[2:]) != uint16(14+segs[0].hl) {
		t.Fatalf("virtio header % x", vh)
	}
	other[2][0] ^= 0x10 // another destination MAC
	if ends := coalesceRuns(other, segs, nil, 14, 65535, false); !equalInts(ends, []int{2, 3}) {
		t.Fatalf("runs %v, want [2 3]", ends)
	}
}
