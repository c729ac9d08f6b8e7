package dataplane

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/dataplane/netcfg"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/dataplane/underlay/underlaytest"
)

const pktSendConfig = `
device:
  name: tpbench
  addresses: [10.200.0.1/24]
encap:
  type: ipip
  tos: 0
underlay:
  local: 10.99.0.1
peers:
  - remote: 10.99.0.2
    prefixes: [10.200.0.2/32]
`

// newPktSendTest is a data plane over fakes with the packet-socket path
// on (its socket a fake too) and, with hop, a next hop for the peer.
func newPktSendTest(tb testing.TB, hop bool) (*Dataplane, *underlayWriter, *underlaytest.Fake, *underlaytest.Fake) {
	tb.Helper()
	raw, pkt := &underlaytest.Fake{}, &underlaytest.Fake{}
	d, q := newTestDataplaneWith(tb, pktSendConfig, "direct", &devicetest.Fake{}, raw)
	tb.Cleanup(func() { d.Close() })
	d.hops = newNextHops(netcfg.UnderlayLink{Index: 2, MAC: tnlLinkMAC}, nil)
	if hop {
		d.hops.table.Store(&map[netip.Addr][6]byte{netip.MustParseAddr("10.99.0.2"): tnlHopMAC})
	}
	d.pkt = newPacketSend(d.cfg, &PacketSend{Queues: []underlay.Sender{pkt}, Link: d.hops.link})
	return d, d.newUnderlayWriter(q, &q.uwriter, 64), raw, pkt
}

// egressIPIP puts an inner packet into a buffer and encapsulates it as
// the device reader would, and returns the packet for the writer.
func egressIPIP(tb testing.TB, d *Dataplane) packet {
	tb.Helper()
	id, ok := d.bufs.getSmall()
	if !ok {
		tb.Fatal("no buffer")
	}
	b := d.bufs.buf(id)
	n := copy(b[Headroom:], ipipInner)
	return packet{idx: id, off: Headroom, end: int32(Headroom + n), peer: d.table.Load().Peers[0]}
}

var ipipInner = innerPacket("10.200.0.1", "10.200.0.2")

// TestPacketSendFrame: what the packet socket gets is a whole Ethernet
// frame, decoded by gopacket: the next hop's MAC, an outer IPv4 header
// with protocol 4 and the configured TTL, and the inner packet unchanged;
// without a next hop the packet goes to the raw socket instead.
func TestPacketSendFrame(t *testing.T) {
	d, u, raw, pkt := newPktSendTest(t, true)
	var frame []byte
	pkt.OnWrite = func(b []byte) { frame = append([]byte(nil), b...) }
	p := egressIPIP(t, d)
	inner := append([]byte(nil), d.bufs.buf(p.idx)[p.off:p.end]...)
	if err := u.write([]packet{p}); err != nil {
		t.Fatal(err)
	}
	if pkt.Sent.Load() != 1 || raw.Sent.Load() != 0 {
		t.Fatalf("packet socket %d, raw socket %d sends", pkt.Sent.Load(), raw.Sent.Load())
	}
	g := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := g.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth == nil || ip == nil || !equalMAC(eth.DstMAC, tnlHopMAC) || !equalMAC(eth.SrcMAC, tnlLinkMAC) {
		t.Fatalf("frame %v", g)
	}
	if ip.Protocol != layers.IPProtocolIPv4 || ip.TTL != 64 || ip.SrcIP.String() != "10.99.0.1" || ip.DstIP.String() != "10.99.0.2" ||
		int(ip.Length) != 20+len(inner) || string(ip.Payload) != string(inner) || ip.Flags&layers.IPv4DontFragment == 0 {
		t.Errorf("outer IPv4 %+v", ip)
	}
	if u.c.PacketSocket.Load() != 1 {
		t.Errorf("PacketSocket = %d", u.c.PacketSocket.Load())
	}

	d2, u2, raw2, pkt2 := newPktSendTest(t, false)
	if err := u2.write([]packet{egressIPIP(t, d2)}); err != nil {
		t.Fatal(err)
	}
	if pkt2.Sent.Load() != 0 || raw2.Sent.Load() != 1 {
		t.Errorf("without a next hop: packet socket %d, raw socket %d sends", pkt2.Sent.Load(), raw2.Sent.Load())
	}
}

// TestPacketSendAllocs: the packet-socket path allocates nothing.
func TestPacketSendAllocs(t *testing.T) {
	d, u, _, _ := newPktSendTest(t, true)
	ps := make([]packet, 32)
	allocs := testing.AllocsPerRun(200, func() {
		for i := range ps {
			ps[i] = egressIPIP(t, d)
		}
		if err := u.write(ps); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch of 32", allocs)
	}
}
