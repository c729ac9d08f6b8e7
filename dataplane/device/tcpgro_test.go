package device

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/encap"
)

// seg builds a TCP segment with gopacket (checksums computed by it).
type segOpt struct {
	v6       bool
	sport    uint16
	seq      uint32
	pay      int
	psh, syn bool
	ts       uint32 // timestamp option value, 0: no options
	badSum   bool
	tos      uint8
}

func buildSeg(t testing.TB, o segOpt) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: layers.TCPPort(o.sport), DstPort: 5201, Seq: o.seq, Ack: 777, ACK: !o.syn, PSH: o.psh, SYN: o.syn, Window: 512}
	if o.ts != 0 {
		tsv := make([]byte, 8)
		binary.BigEndian.PutUint32(tsv, o.ts)
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: tsv}}
	}
	payload := make([]byte, o.pay)
	for i := range payload {
		payload[i] = byte(int(o.seq) + i)
	}
	ipl, nl := innerIPLayer(o.v6, layers.IPProtocolTCP, o.tos, uint16(o.seq), true)
	tcp.SetNetworkLayerForChecksum(nl)
	b := devicetest.Serialize(t, ipl, tcp, gopacket.Payload(payload))
	if o.badSum {
		b[len(b)-1] ^= 0xff
	}
	return b
}

// innerIPLayer is the inner IP header of the test packets, 10.200.0.1 ->
// 10.200.0.2 or fd00:200::1 -> fd00:200::2.
func innerIPLayer(v6 bool, proto layers.IPProtocol, tos uint8, id uint16, df bool) (gopacket.SerializableLayer, gopacket.NetworkLayer) {
	if v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: tos, NextHeader: proto, HopLimit: 64,
			SrcIP: net.ParseIP("fd00:200::1"), DstIP: net.ParseIP("fd00:200::2")}
		return ip, ip
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TOS: tos, TTL: 64, Protocol: proto,
		SrcIP: net.IP{10, 200, 0, 1}, DstIP: net.IP{10, 200, 0, 2}, Id: id}
	if df {
		ip.Flags = layers.IPv4DontFragment
	}
	return ip, ip
}

func runsOf(pkts [][]byte) []int {
	return coalesceRuns(pkts, make([]tcpSeg, len(pkts)), nil, 0, 65535, false)
}

func TestCoalesceRuns(t *testing.T) {
	const mss = 1400
	train := func(o segOpt, n int) []segOpt {
		var s []segOpt
		for i := range n {
			x := o
			x.seq = o.seq + uint32(i*o.pay)
			s = append(s, x)
		}
		return s
	}
	base := segOpt{sport: 40000, seq: 1000, pay: mss, ts: 5}
	cases := []struct {
		name string
		segs []segOpt
		mod  func([]segOpt)
		want []int
	}{
		{"one flow", train(base, 5), nil, []int{5}},
		{"one flow, ipv6", train(segOpt{v6: true, sport: 40000, seq: 1, pay: mss, ts: 5}, 4), nil, []int{4}},
		{"short last with PSH ends the run", append(train(base, 3), segOpt{sport: 40000, seq: 1000 + 3*mss, pay: 100, psh: true, ts: 5}, segOpt{sport: 40000, seq: 1000 + 3*mss + 100, pay: mss, ts: 5}), nil, []int{4, 5}},
		{"PSH in the middle ends the run", train(base, 4), func(s []segOpt) { s[1].psh = true }, []int{2, 4}},
		{"head with PSH stays alone", train(base, 3), func(s []segOpt) { s[0].psh = true }, []int{1, 3}},
		{"sequence gap", train(base, 4), func(s []segOpt) { s[2].seq++; s[3].seq++ }, []int{2, 4}},
		{"other flow between", train(base, 4), func(s []segOpt) { s[2].sport = 40001 }, []int{2, 3, 4}},
		{"bad checksum stays alone", train(base, 4), func(s []segOpt) { s[2].badSum = true }, []int{2, 3, 4}},
		{"bad checksum at the head", train(base, 3), func(s []segOpt) { s[0].badSum = true }, []int{1, 3}},
		{"different timestamps", train(base, 4), func(s []segOpt) { s[2].ts = 6; s[3].ts = 6 }, []int{2, 4}},
		{"different TOS (ECN CE)", train(base, 3), func(s []segOpt) { s[1].tos = 3 }, []int{1, 2, 3}},
		{"longer than the first", train(segOpt{sport: 40000, seq: 1, pay: 500, ts: 5}, 2), func(s []segOpt) { s[1].pay = 600 }, []int{1, 2}},
		{"SYN", train(base, 2), func(s []segOpt) { s[0].syn = true; s[0].pay = 0 }, []int{1, 2}},
		{"64 KiB limit", train(segOpt{sport: 40000, seq: 1, pay: 9000, ts: 5}, 9), nil, []int{7, 9}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			segs := append([]segOpt(nil), tc.segs...)
			if tc.mod != nil {
				tc.mod(segs)
			}
			var pkts [][]byte
			for _, o := range segs {
				pkts = append(pkts, buildSeg(t, o))
			}
			if got := runsOf(pkts); !equalInts(got, tc.want) {
				t.Fatalf("runs end at %v, want %v", got, tc.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSuperPacket coalesces a run and checks the super-packet with
// gopacket: lengths, IPv4 header checksum, PSH, payload in order, and the
// TCP checksum once the "device" completes it from the pseudo-header sum
// left in the field (what the kernel does for NEEDS_CSUM).
func TestSuperPacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		const mss, n = 1400, 6
		var pkts [][]byte
		var want []byte
		for i := range n {
			o := segOpt{v6: v6, sport: 40000, seq: uint32(7 + i*mss), pay: mss, ts: 9}
			if i == n-1 {
				o.pay, o.psh = 321, true
			}
			p := buildSeg(t, o)
			pkts = append(pkts, p)
			want = append(want, p[len(p)-o.pay:]...)
		}
		segs := make([]tcpSeg, n)
		if ends := coalesceRuns(pkts, segs, nil, 0, 65535, false); !equalInts(ends, []int{n}) {
			t.Fatalf("v6=%v: runs %v", v6, ends)
		}
		var vh [VirtioHdrLen]byte
		pay := 0
		for _, s := range segs {
			pay += s.pay
		}
		superHeader(pkts[0], &segs[0], pay, segs[0].pay, true, 0, &vh)
		sp := append([]byte(nil), pkts[0]...)
		for i := 1; i < n; i++ {
			sp = append(sp, pkts[i][segs[i].hl:]...)
		}
		h := segs[0]
		wantType := uint8(VirtioGSOTCPv4)
		if v6 {
			wantType = VirtioGSOTCPv6
		}
		if vh[0] != VirtioNeedsCsum || vh[1] != wantType || binary.LittleEndian.Uint16(vh[2:]) != uint16(h.hl) ||
			binary.LittleEndian.Uint16(vh[4:]) != mss || binary.LittleEndian.Uint16(vh[6:]) != uint16(h.iphl) ||
			binary.LittleEndian.Uint16(vh[8:]) != 16 {
			t.Fatalf("v6=%v: virtio header % x", v6, vh)
		}
		// Complete the checksum as the kernel would, then verify it.
		tcpOff := h.iphl
		csum := ^encap.Fold(encap.Sum(sp[tcpOff:], 0))
		binary.BigEndian.PutUint16(sp[tcpOff+16:], csum)
		s := parseSeg(sp, false)
		if !tcpChecksumOK(sp, &s) {
			t.Fatalf("v6=%v: completed TCP checksum does not verify", v6)
		}
		first := layers.LayerTypeIPv4
		if v6 {
			first = layers.LayerTypeIPv6
		}
		pk := gopacket.NewPacket(sp, first, gopacket.Default)
		if el := pk.ErrorLayer(); el != nil {
			t.Fatalf("v6=%v: gopacket: %v", v6, el.Error())
		}
		if v6 {
			ip := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if int(ip.Length) != len(sp)-40 {
				t.Fatalf("payload length %d, packet %d", ip.Length, len(sp))
			}
		} else {
			ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if int(ip.Length) != len(sp) || encap.IPv4Checksum(sp[:20]) != 0 {
				t.Fatalf("total length %d (packet %d), header checksum ok=%v", ip.Length, len(sp), encap.IPv4Checksum(sp[:20]) == 0)
			}
		}
		tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !tcp.PSH || !tcp.ACK || tcp.Seq != 7 || tcp.Ack != 777 {
			t.Fatalf("tcp flags/seq: %+v", tcp)
		}
		if !bytes.Equal(tcp.Payload, want) {
			t.Fatalf("v6=%v: payload differs (%d vs %d bytes)", v6, len(tcp.Payload), len(want))
		}
	}
}

func TestCoalesceRunsAllocatesNothing(t *testing.T) {
	var pkts [][]byte
	for i := range 32 {
		pkts = append(pkts, buildSeg(t, segOpt{sport: 40000, seq: uint32(i * 1400), pay: 1400, ts: 5}))
	}
	segs, ends := make([]tcpSeg, len(pkts)), make([]int, 0, len(pkts))
	if a := testing.AllocsPerRun(100, func() { ends = coalesceRuns(pkts, segs, ends, 0, 65535, false) }); a != 0 {
		t.Fatalf("coalesceRuns allocates %.1f per batch", a)
	}
}

func BenchmarkCoalesceRuns(b *testing.B) {
	var pkts [][]byte
	for i := range 44 {
		pkts = append(pkts, buildSeg(b, segOpt{sport: 40000, seq: uint32(i * 1400), pay: 1400, ts: 5}))
	}
	segs, ends := make([]tcpSeg, len(pkts)), make([]int, 0, len(pkts))
	b.SetBytes(44 * 1400)
	for b.Loop() {
		ends = coalesceRuns(pkts, segs, ends, 0, 65535, false)
	}
}

// FuzzCoalesce cuts the input into packets (a length byte pair before
// each) and checks that coalescing never panics and that every run it
// makes is one flow in sequence whose super-packet header can be built.
func FuzzCoalesce(f *testing.F) {
	var seed []byte
	for i := range 3 {
		p := buildSeg(f, segOpt{sport: 40000, seq: uint32(i * 100), pay: 100, ts: 5})
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(p)))
		seed = append(seed, p...)
	}
	f.Add(seed)
	p6 := buildSeg(f, segOpt{v6: true, sport: 1, seq: 1, pay: 10})
	f.Add(append(binary.BigEndian.AppendUint16(nil, uint16(len(p6))), p6...))
	f.Fuzz(func(t *testing.T, in []byte) {
		uso := len(in)%2 == 1 // UDP coalescing on for odd lengths
		var pkts [][]byte
		for len(in) >= 2 && len(pkts) < 64 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			if n == 0 || n > len(in) {
				break
			}
			pkts = append(pkts, append([]byte(nil), in[:n]...))
			in = in[n:]
		}
		segs := make([]tcpSeg, len(pkts))
		mtu := 65535
		if len(in)%3 == 0 {
			mtu = 120 // some packets are super-packets, never in a run
		}
		ends := coalesceRuns(pkts, segs, nil, 0, mtu, uso)
		start := 0
		for _, end := range ends {
			if end <= start || end > len(pkts) {
				t.Fatalf("bad run end %d after %d", end, start)
			}
			if end-start > 1 {
				pay := 0
				for i := start; i < end; i++ {
					s := &segs[i]
					if !s.ok || len(pkts[i]) > mtu || !sameFlow(pkts[start], pkts[i], &segs[start], s) || s.pay > segs[start].pay {
						t.Fatalf("packet %d joined a run it does not belong to", i)
					}
					pay += s.pay
				}
				if segs[start].hl+pay > maxCoalesceBytes {
					t.Fatalf("run of %d bytes", segs[start].hl+pay)
				}
				var vh [VirtioHdrLen]byte
				superHeader(pkts[start], &segs[start], pay, segs[start].pay, false, 0, &vh)
			} else if s := &segs[start]; s.partial && !checksumPartial(pkts[start], s) {
				t.Fatalf("packet %d marked partial, checksum is not", start)
			}
			start = end
		}
		if start != len(pkts) {
			t.Fatalf("runs cover %d of %d packets", start, len(pkts))
		}
	})
}

func buildUDP(t testing.TB, v6 bool, sport uint16, pay int, zeroSum bool) []byte {
	t.Helper()
	payload := make([]byte, pay)
	for i := range payload {
		payload[i] = byte(i + int(sport))
	}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: 4500}
	ipl, nl := innerIPLayer(v6, layers.IPProtocolUDP, 0, 0, false)
	u.SetNetworkLayerForChecksum(nl)
	b := devicetest.Serialize(t, ipl, u, gopacket.Payload(payload))
	if zeroSum {
		iphl := 20
		if v6 {
			iphl = 40
		}
		b[iphl+6], b[iphl+7] = 0, 0
	}
	return b
}

// TestCoalesceUDP: with USO, runs of one UDP flow's equal-sized datagrams
// become one super-packet whose segments the kernel cuts back exactly.
func TestCoalesceUDP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		var pkts [][]byte
		for range 5 {
			pkts = append(pkts, buildUDP(t, v6, 1000, 1200, false))
		}
		pkts = append(pkts, buildUDP(t, v6, 1000, 300, false)) // a shorter last one ends the run
		pkts = append(pkts, buildUDP(t, v6, 1000, 1200, false))
		segs := make([]tcpSeg, len(pkts))
		if ends := coalesceRuns(pkts, segs, nil, 0, 65535, true); !equalInts(ends, []int{6, 7}) {
			t.Fatalf("v6=%v: runs %v, want [6 7]", v6, ends)
		}
		if ends := coalesceRuns(pkts, segs, nil, 0, 65535, false); len(ends) != len(pkts) {
			t.Fatalf("v6=%v without USO: runs %v, want all single", v6, ends)
		}
		other := append([][]byte{}, pkts[:3]...)
		other = append(other, buildUDP(t, v6, 1001, 1200, false), buildUDP(t, v6, 1000, 1200, false))
		if ends := coalesceRuns(other, segs, nil, 0, 65535, true); !equalInts(ends, []int{3, 4, 5}) {
			t.Fatalf("v6=%v other flow: runs %v", v6, ends)
		}
		bad := append([][]byte{}, pkts[:3]...)
		bad[1] = append([]byte(nil), bad[1]...)
		bad[1][len(bad[1])-1] ^= 0x55
		if ends := coalesceRuns(bad, segs, nil, 0, 65535, true); !equalInts(ends, []int{1, 2, 3}) {
			t.Fatalf("v6=%v bad checksum: runs %v", v6, ends)
		}
		// The super-packet: lengths, and a checksum that completes.
		segs = make([]tcpSeg, 6)
		coalesceRuns(pkts[:6], segs, nil, 0, 65535, true)
		var vh [VirtioHdrLen]byte
		pay := 0
		for _, s := range segs {
			pay += s.pay
		}
		superHeader(pkts[0], &segs[0], pay, segs[0].pay, false, 0, &vh)
		h := segs[0]
		if vh[1] != VirtioGSOUDPL4 || binary.LittleEndian.Uint16(vh[8:]) != 6 || binary.LittleEndian.Uint16(vh[4:]) != 1200 {
			t.Fatalf("v6=%v: virtio header % x", v6, vh)
		}
		sp := append([]byte(nil), pkts[0]...)
		for i := 1; i < 6; i++ {
			sp = append(sp, pkts[i][segs[i].hl:]...)
		}
		if got := int(binary.BigEndian.Uint16(sp[h.iphl+4:])); got != len(sp)-h.iphl {
			t.Fatalf("v6=%v: UDP length %d, want %d", v6, got, len(sp)-h.iphl)
		}
		binary.BigEndian.PutUint16(sp[h.iphl+6:], ^encap.Fold(encap.Sum(sp[h.iphl:], 0)))
		s := parseSeg(sp, true)
		if !s.ok || !tcpChecksumOK(sp, &s) {
			t.Fatalf("v6=%v: completed UDP checksum does not verify", v6)
		}
	}
	// IPv4 UDP without a checksum is still coalesced.
	z := [][]byte{buildUDP(t, false, 7, 500, true), buildUDP(t, false, 7, 500, true)}
	if ends := coalesceRuns(z, make([]tcpSeg, 2), nil, 0, 65535, true); !equalInts(ends, []int{2}) {
		t.Fatalf("zero-checksum UDP: runs %v", ends)
	}
}
