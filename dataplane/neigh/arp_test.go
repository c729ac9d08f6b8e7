package neigh

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func arpLayer(op uint16, sha MAC, spa netip.Addr, tha MAC, tpa netip.Addr) *layers.ARP {
	return &layers.ARP{
		AddrType:          layers.LinkTypeEthernet,
		Protocol:          layers.EthernetTypeIPv4,
		HwAddressSize:     6,
		ProtAddressSize:   4,
		Operation:         op,
		SourceHwAddress:   hw(sha),
		SourceProtAddress: ip(spa),
		DstHwAddress:      hw(tha),
		DstProtAddress:    ip(tpa),
	}
}

// arpFrame builds an Ethernet ARP frame with gopacket. gopacket pads
// Ethernet to 60 bytes; the padding is cut off so that the frame is the bare
// 42 bytes a VXLAN peer may send (tests add padding where they want it).
func arpFrame(tb testing.TB, ethDst MAC, op uint16, sha MAC, spa netip.Addr, tpa netip.Addr) []byte {
	tb.Helper()
	f := serialize(tb,
		&layers.Ethernet{SrcMAC: hw(sha), DstMAC: hw(ethDst), EthernetType: layers.EthernetTypeARP},
		arpLayer(op, sha, spa, MAC{}, tpa),
	)
	if len(f) < ARPReplyLen {
		tb.Fatalf("gopacket ARP frame is %d bytes", len(f))
	}
	return f[:ARPReplyLen]
}

func arpRequest(tb testing.TB) []byte {
	return arpFrame(tb, bcast, layers.ARPRequest, peerMAC, peer4, our4)
}

// checkARPReply decodes reply with gopacket and checks every field of an
// ARP reply from r to (sha, spa) for tpa.
func checkARPReply(tb testing.TB, reply []byte, sha MAC, spa, tpa netip.Addr) {
	tb.Helper()
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("decode reply: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		tb.Fatalf("reply is not Ethernet/ARP: %v", p)
	}
	if !bytes.Equal(eth.DstMAC, sha[:]) || !bytes.Equal(eth.SrcMAC, ourMAC[:]) || eth.EthernetType != layers.EthernetTypeARP {
		tb.Errorf("ethernet: dst %v src %v type %v", eth.DstMAC, eth.SrcMAC, eth.EthernetType)
	}
	if arp.AddrType != layers.LinkTypeEthernet || arp.Protocol != layers.EthernetTypeIPv4 ||
		arp.HwAddressSize != 6 || arp.ProtAddressSize != 4 || arp.Operation != layers.ARPReply {
		tb.Errorf("arp header: %+v", arp)
	}
	if !bytes.Equal(arp.SourceHwAddress, ourMAC[:]) || !bytes.Equal(arp.SourceProtAddress, tpa.AsSlice()) {
		tb.Errorf("arp sender: %v %v, want %v %v", arp.SourceHwAddress, arp.SourceProtAddress, hw(ourMAC), tpa)
	}
	if !bytes.Equal(arp.DstHwAddress, sha[:]) || !bytes.Equal(arp.DstProtAddress, spa.AsSlice()) {
		tb.Errorf("arp target: %v %v, want %v %v", arp.DstHwAddress, arp.DstProtAddress, hw(sha), spa)
	}
}

func TestARPReply(t *testing.T) {
	r := newTestResponder()
	for _, tc := range []struct {
		name      string
		head      int
		tail      int
		wantN     int
		ethDst    MAC
		spa       netip.Addr
		extraTail int // request padding inside the frame
	}{
		{"exact buffer, unpadded", 0, 0, ARPReplyLen, bcast, peer4, 0},
		{"room for padding", 16, 32, MinFrameLen, bcast, peer4, 0},
		{"18 bytes of room", 4, 18, MinFrameLen, bcast, peer4, 0},
		{"17 bytes of room", 4, 17, ARPReplyLen, bcast, peer4, 0},
		{"padded request", 2, 0, MinFrameLen, bcast, peer4, 18},
		{"unicast to us", 8, 100, MinFrameLen, ourMAC, peer4, 0},
		{"probe from 0.0.0.0", 8, 100, MinFrameLen, bcast, netip.IPv4Unspecified(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := arpFrame(t, tc.ethDst, layers.ARPRequest, peerMAC, tc.spa, our4)
			req = append(req, make([]byte, tc.extraTail)...)
			b, off, end := withRoom(req, tc.head, tc.tail)
			orig := append([]byte(nil), b...)
			res, n := r.Handle(b, off, end)
			if res != Replied || n != tc.wantN {
				t.Fatalf("Handle = %v, %d; want replied, %d", res, n, tc.wantN)
			}
			if n > len(b)-off {
				t.Fatalf("n %d > room %d", n, len(b)-off)
			}
			checkARPReply(t, b[off:off+n], peerMAC, tc.spa, our4)
			if n == MinFrameLen && !bytes.Equal(b[off+ARPReplyLen:off+n], make([]byte, MinFrameLen-ARPReplyLen)) {
				t.Errorf("padding not zero: %x", b[off+ARPReplyLen:off+n])
			}
			if !bytes.Equal(b[:off], orig[:off]) || !bytes.Equal(b[off+n:], orig[off+n:]) {
				t.Errorf("Handle wrote outside b[off:off+n]")
			}
		})
	}
}

func TestARPNoReply(t *testing.T) {
	r := newTestResponder()
	mod := func(f func(b []byte)) []byte {
		b := arpRequest(t)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  Result
	}{
		{"other target", arpFrame(t, bcast, layers.ARPRequest, peerMAC, peer4, other4), NotForUs},
		{"ARP reply", arpFrame(t, bcast, layers.ARPReply, peerMAC, peer4, our4), NotForUs},
		{"gratuitous", arpFrame(t, bcast, layers.ARPRequest, peerMAC, our4, our4), NotForUs},
		{"unicast to another MAC", arpFrame(t, peerMAC, layers.ARPRequest, peerMAC, peer4, our4), NotForUs},
		{"htype 6", mod(func(b []byte) { b[15] = 6 }), Malformed},
		{"ptype IPv6", mod(func(b []byte) { b[16], b[17] = 0x86, 0xdd }), Malformed},
		{"hlen 8", mod(func(b []byte) { b[18] = 8 }), Malformed},
		{"plen 16", mod(func(b []byte) { b[19] = 16 }), Malformed},
		{"op 3 (RARP)", mod(func(b []byte) { b[21] = 3 }), Malformed},
		{"op 0x0101", mod(func(b []byte) { b[20] = 1 }), Malformed},
		{"multicast sender MAC", mod(func(b []byte) { b[22] |= 1 }), Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, off, end := withRoom(tc.frame, 4, 64)
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

func TestARPTruncated(t *testing.T) {
	r := newTestResponder()
	req := arpRequest(t)
	for l := 0; l < len(req); l++ {
		// Truncated frame in an exact buffer, and in a large buffer.
		b := append([]byte(nil), req[:l]...)
		if res, n := r.Handle(b, 0, l); res != Malformed || n != 0 {
			t.Errorf("len %d exact: %v, %d; want malformed", l, res, n)
		}
		b, off, end := withRoom(req[:l], 3, 200)
		if res, n := r.Handle(b, off, end); res != Malformed || n != 0 {
			t.Errorf("len %d roomy: %v, %d; want malformed", l, res, n)
		}
	}
}

func TestARPNoAlloc(t *testing.T) {
	r := newTestResponder()
	req := arpRequest(t)
	b := make([]byte, 128)
	allocs := testing.AllocsPerRun(1000, func() {
		copy(b[16:], req)
		if res, _ := r.Handle(b, 16, 16+len(req)); res != Replied {
			t.Fatalf("Handle = %v", res)
		}
	})
	if allocs != 0 {
		t.Errorf("Handle(ARP) allocates %v per call", allocs)
	}
}
