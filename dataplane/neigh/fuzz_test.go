package neigh

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzHandle feeds arbitrary frames to Handle, once in a buffer of exactly
// the frame's size and once with headroom and room for any reply. Invariants:
// no panic; no reply means the buffer is unchanged; a reply fits in b[off:],
// leaves the bytes outside b[off:off+n] alone and re-parses as an ARP reply or
// Neighbour Advertisement from our MAC for one of our addresses.
// Seeds: testdata/fuzz/FuzzHandle.
func FuzzHandle(f *testing.F) {
	r := newTestResponder()
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, room := range []struct{ head, tail int }{{0, 0}, {3, MaxReplyLen}} {
			b, off, end := withRoom(frame, room.head, room.tail)
			orig := append([]byte(nil), b...)
			res, n := r.Handle(b, off, end)
			if res >= Result(NumResults) {
				t.Fatalf("unknown result %d", res)
			}
			if res != Replied {
				if n != 0 {
					t.Fatalf("%v with n = %d", res, n)
				}
				if !bytes.Equal(b, orig) {
					t.Fatalf("%v changed the buffer", res)
				}
				continue
			}
			if n <= 0 || n > len(b)-off {
				t.Fatalf("replied n = %d, room %d", n, len(b)-off)
			}
			if !bytes.Equal(b[:off], orig[:off]) || !bytes.Equal(b[off+n:], orig[off+n:]) {
				t.Fatalf("wrote outside b[off:off+n]")
			}
			checkAnyReply(t, r, b[off:off+n])
		}
	})
}

// checkAnyReply checks that reply is an ARP reply or an NA sent by r.
func checkAnyReply(tb testing.TB, r *Responder, reply []byte) {
	tb.Helper()
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("reply does not decode: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil || !bytes.Equal(eth.SrcMAC, ourMAC[:]) {
		tb.Fatalf("reply not from our MAC: %v", p)
	}
	if arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP); arp != nil {
		if len(reply) != ARPReplyLen && len(reply) != MinFrameLen {
			tb.Fatalf("ARP reply length %d", len(reply))
		}
		spa, _ := netip.AddrFromSlice(arp.SourceProtAddress)
		if arp.Operation != layers.ARPReply || !bytes.Equal(arp.SourceHwAddress, ourMAC[:]) || !r.Owns(spa) ||
			!bytes.Equal(eth.DstMAC, arp.DstHwAddress) || eth.DstMAC[0]&1 != 0 {
			tb.Fatalf("bad ARP reply: %v", p)
		}
		return
	}
	ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if ip6 == nil || na == nil || len(reply) != NAReplyLen {
		tb.Fatalf("reply is neither ARP reply nor NA: %v", p)
	}
	src, _ := netip.AddrFromSlice(ip6.SrcIP)
	dst, _ := netip.AddrFromSlice(ip6.DstIP)
	if ip6.HopLimit != 255 || !r.Owns(src) || !na.TargetAddress.Equal(ip6.SrcIP) || !na.Override() || na.Router() {
		tb.Fatalf("bad NA: %v", p)
	}
	if na.Solicited() == (dst == netip.MustParseAddr("ff02::1")) {
		tb.Fatalf("NA solicited flag %v to %v", na.Solicited(), dst)
	}
	if got, want := binary.BigEndian.Uint16(reply[56:58]), refChecksum(src, dst, reply[54:]); got != want {
		tb.Fatalf("NA checksum %#04x, want %#04x", got, want)
	}
	if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || !bytes.Equal(na.Options[0].Data, ourMAC[:]) {
		tb.Fatalf("NA options %v", na.Options)
	}
}
