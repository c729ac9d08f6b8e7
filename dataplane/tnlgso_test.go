package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/dataplane/netcfg"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/dataplane/underlay/underlaytest"
)

const tnlGSOConfig = `
device:
  name: tpbench
  addresses: [10.200.0.1/24, fd00:200::1/64]
  mac: 02:00:00:00:01:01
encap:
  type: vxlan
  vni: 42
underlay:
  local: 10.99.0.1
peers:
  - remote: 10.99.0.2
    prefixes: [10.200.0.2/32, fd00:200::2/128]
    mac: 02:00:00:00:02:02
`

var (
	tnlLinkMAC = [6]byte{0x02, 0xaa, 0, 0, 0, 1}
	tnlHopMAC  = [6]byte{0x02, 0xbb, 0, 0, 0, 2}
)

// newTnlGSOTest is a data plane over fakes with the TAP's state on and a
// next hop for the peer (nil hops: none known).
func newTnlGSOTest(tb testing.TB, hops map[netip.Addr][6]byte) (*Dataplane, *egressBatch) {
	tb.Helper()
	d, q := newTestDataplaneWith(tb, tnlGSOConfig, "direct", &devicetest.Fake{}, &underlaytest.Fake{})
	tb.Cleanup(func() { d.Close() })
	d.hops = newNextHops(netcfg.UnderlayLink{Index: 2, Name: "veth-a", MAC: tnlLinkMAC}, nil)
	d.tgso = newTunnelGSO(d.cfg, &TunnelTAP{Link: d.hops.link}, d.hops, d.queues)
	if hops != nil {
		d.hops.table.Store(&hops)
	}
	e := &egressBatch{q: q, out: make([]packet, 0, 256), free: make([]uint32, 0, 256)}
	e.start(d.table.Load(), 0, nil)
	return d, e
}

// superIn puts a TCP super-packet as the TUN hands it into a large buffer
// of st and returns its virtio header's segment size.
func superIn(tb testing.TB, d *Dataplane, st *superState, v6 bool, pay int) (pkt []byte) {
	tb.Helper()
	pkt, _ = devicetest.SuperPacket(tb, v6, false, pay, devicetest.FlagACK|devicetest.FlagPSH)
	id, ok := d.bufs.large.Get()
	if !ok {
		tb.Fatal("no large buffer")
	}
	st.id = id | largeBit
	st.n = copy(d.bufs.buf(st.id)[Headroom:], pkt)
	iphl, gso := 20, uint8(device.VirtioGSOTCPv4)
	if v6 {
		iphl, gso = 40, device.VirtioGSOTCPv6
	}
	st.h = device.VirtioHdr{Flags: device.VirtioNeedsCsum, GSOType: gso, HdrLen: iphl + 32, GSOSize: 1378, CsumStart: iphl, CsumOffset: 16}
	st.pending = true
	return pkt
}

// TestTapSuperFrame checks the frame a TCP super-packet becomes, decoded
// by gopacket: the virtio tunnel header's offsets, the outer Ethernet,
// IPv4 and UDP headers, VXLAN, and the inner packet unchanged behind the
// inner Ethernet header.
func TestTapSuperFrame(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		d, e := newTnlGSOTest(t, map[netip.Addr][6]byte{netip.MustParseAddr("10.99.0.2"): tnlHopMAC})
		st := newSuperState(nil, 128)
		pkt := superIn(t, d, st, v6, 40000)
		d.egressSuper(e, st)
		if len(e.out) != 1 || e.out[0].gso != 1378 || st.id != noBuffer {
			t.Fatalf("v6=%v: %d packets out (gso %v), want one TAP frame", v6, len(e.out), e.out)
		}
		p := e.out[0]
		frame := d.bufs.buf(p.idx)[p.off:p.end]
		vh := frame[:underlay.TunnelVnetHdrLen]
		eth := frame[underlay.TunnelVnetHdrLen:]
		iphl := 20
		gsoType := byte(0x21)
		if v6 {
			iphl, gsoType = 40, 0x24
		}
		le := binary.LittleEndian.Uint16
		innerNH := 14 + 20 + 8 + 8 + 14
		if vh[0] != 1 || vh[1] != gsoType || int(le(vh[4:])) != 1378 || int(le(vh[6:])) != innerNH+iphl || le(vh[8:]) != 16 ||
			int(le(vh[2:])) != innerNH+iphl+32 || le(vh[20:]) != 34 || int(le(vh[22:])) != innerNH {
			t.Errorf("v6=%v: virtio header % x", v6, vh)
		}
		pk := gopacket.NewPacket(eth, layers.LayerTypeEthernet, gopacket.Default)
		oe, _ := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		oip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		ou, _ := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
		vx, _ := pk.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if oe == nil || oip == nil || ou == nil || vx == nil {
			t.Fatalf("v6=%v: gopacket decoded %v", v6, pk)
		}
		if !equalMAC(oe.DstMAC, tnlHopMAC) || !equalMAC(oe.SrcMAC, tnlLinkMAC) {
			t.Errorf("outer Ethernet %v -> %v", oe.SrcMAC, oe.DstMAC)
		}
		if oip.SrcIP.String() != "10.99.0.1" || oip.DstIP.String() != "10.99.0.2" || int(oip.Length) != len(eth)-14 || oip.TTL != 64 ||
			oip.Flags&layers.IPv4DontFragment == 0 {
			t.Errorf("outer IPv4 %+v", oip)
		}
		if ou.DstPort != 4789 || ou.SrcPort != 4789 || int(ou.Length) != len(eth)-34 || ou.Checksum != 0 {
			t.Errorf("outer UDP %+v", ou)
		}
		if vx.VNI != 42 || !vx.ValidIDFlag {
			t.Errorf("VXLAN %+v", vx)
		}
		ie := gopacket.NewPacket(vx.Payload, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if !equalMAC(ie.DstMAC, [6]byte{2, 0, 0, 0, 2, 2}) || !equalMAC(ie.SrcMAC, [6]byte{2, 0, 0, 0, 1, 1}) {
			t.Errorf("inner Ethernet %v -> %v", ie.SrcMAC, ie.DstMAC)
		}
		if string(ie.Payload) != string(pkt) {
			t.Errorf("v6=%v: the inner packet changed", v6)
		}
		d.bufs.put(p.idx)
	}
}

func equalMAC(a net.HardwareAddr, b [6]byte) bool { return string(a) == string(b[:]) }

// TestTapSuperFallback: without a next hop, or with segments over the
// path MTU, the super-packet is split here as the device would have split
// it, the large buffer stays with the reader, and a missing hop asks the
// resolver to look soon.
func TestTapSuperFallback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hop     bool
		pathMTU int
	}{{"no hop", false, 0}, {"path MTU", true, 1400}} {
		t.Run(tc.name, func(t *testing.T) {
			hops := map[netip.Addr][6]byte{}
			if tc.hop {
				hops[netip.MustParseAddr("10.99.0.2")] = tnlHopMAC
			}
			d, e := newTnlGSOTest(t, hops)
			if tc.pathMTU != 0 {
				e.tbl.Peers[0].pathMTU = tc.pathMTU
			}
			st := newSuperState(nil, 128)
			superIn(t, d, st, false, 40000)
			id := st.id
			d.egressSuper(e, st)
			segs := (40000 + 1377) / 1378
			if st.id != id {
				t.Errorf("the reader lost its large buffer")
			}
			if tc.pathMTU == 0 && len(e.out) != segs {
				t.Errorf("%d packets out, want %d segments", len(e.out), segs)
			}
			for _, p := range e.out {
				if p.gso != 0 {
					t.Fatalf("a TAP frame went out: %+v", p)
				}
			}
			if !tc.hop {
				select {
				case <-d.hops.miss:
				default:
					t.Errorf("no lookup asked for")
				}
			}
		})
	}
}

// TestTapSuperAllocs: the TAP path allocates nothing per super-packet.
func TestTapSuperAllocs(t *testing.T) {
	d, e := newTnlGSOTest(t, map[netip.Addr][6]byte{netip.MustParseAddr("10.99.0.2"): tnlHopMAC})
	st := newSuperState(nil, 128)
	pkt := superIn(t, d, st, false, 40000)
	h := st.h
	allocs := testing.AllocsPerRun(200, func() {
		e.start(e.tbl, 0, nil)
		if st.id == noBuffer {
			id, _ := d.bufs.large.Get()
			st.id = id | largeBit
		}
		st.n, st.h, st.pending = copy(d.bufs.buf(st.id)[Headroom:], pkt), h, true
		d.egressSuper(e, st)
		for _, p := range e.out {
			d.bufs.put(p.idx)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per super-packet", allocs)
	}
}

// FuzzTapSuper feeds the TAP path whatever a device might hand over: any
// virtio header with any bytes. Nothing may panic, a frame must lie
// within its buffer, and every buffer must come back.
func FuzzTapSuper(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		p, _ := devicetest.SuperPacket(f, v6, false, 5000, devicetest.FlagACK)
		iphl := uint16(20)
		gso := uint8(device.VirtioGSOTCPv4)
		if v6 {
			iphl, gso = 40, device.VirtioGSOTCPv6
		}
		f.Add(p, uint8(device.VirtioNeedsCsum), gso, iphl+32, uint16(1378), iphl, uint16(16))
	}
	f.Add([]byte{0x45, 0, 0, 40}, uint8(1), uint8(1), uint16(0), uint16(1), uint16(0), uint16(16))
	d, e := newTnlGSOTest(f, map[netip.Addr][6]byte{netip.MustParseAddr("10.99.0.2"): tnlHopMAC})
	st := newSuperState(nil, 128)
	smallFree, largeFree := d.bufs.small.Free(), d.bufs.large.Free()
	f.Fuzz(func(t *testing.T, pkt []byte, flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) {
		if len(pkt) > 65535 || gsoSize == 0 {
			return
		}
		e.start(e.tbl, 0, nil)
		id, _ := d.bufs.large.Get()
		st.id = id | largeBit
		b := d.bufs.buf(st.id)
		st.n = copy(b[Headroom:], pkt)
		st.h = device.VirtioHdr{Flags: flags, GSOType: gsoType, HdrLen: int(hdrLen), GSOSize: int(gsoSize), CsumStart: int(csumStart), CsumOffset: int(csumOffset)}
		st.pending = true
		d.egressSuper(e, st)
		for _, p := range e.out {
			if p.gso != 0 && (p.off < 0 || int(p.end) > len(d.bufs.buf(p.idx)) || p.end-p.off < underlay.TunnelFrameOverhead) {
				t.Fatalf("frame [%d:%d] outside its buffer", p.off, p.end)
			}
			d.bufs.put(p.idx)
		}
		for _, p := range e.icmps {
			d.bufs.put(p.idx)
		}
		e.icmps = e.icmps[:0]
		d.bufs.putBatch(e.free)
		if st.id != noBuffer {
			d.bufs.put(st.id)
		}
		if d.bufs.small.Free() != smallFree || d.bufs.large.Free() != largeFree {
			t.Fatalf("buffers lost: small %d of %d, large %d of %d free", d.bufs.small.Free(), smallFree, d.bufs.large.Free(), largeFree)
		}
	})
}

// BenchmarkEgressSuper is the device reader's user-space work for one
// 62 KB TCP super-packet (45 segments): made one TAP frame (tap), or
// split into segments as without the TAP (split: what the sockets path
// does before its UDP_SEGMENT send). MB/s counts the inner packet.
func BenchmarkEgressSuper(b *testing.B) {
	for _, tc := range []struct {
		name string
		hop  bool
	}{{"tap", true}, {"split", false}} {
		b.Run(tc.name, func(b *testing.B) {
			hops := map[netip.Addr][6]byte{}
			if tc.hop {
				hops[netip.MustParseAddr("10.99.0.2")] = tnlHopMAC
			}
			d, e := newTnlGSOTest(b, hops)
			st := newSuperState(nil, 128)
			pkt := superIn(b, d, st, false, 62000)
			h := st.h
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			id := st.id
			for b.Loop() {
				e.start(e.tbl, 0, nil)
				// The same large buffer every time, as a reader's is while
				// the writer keeps up; the device's read leaves the packet
				// in it, and a copy stands in for that (both cases pay it).
				st.id = id
				st.n, st.h, st.pending = copy(d.bufs.buf(st.id)[Headroom:], pkt), h, true
				d.egressSuper(e, st)
				for _, p := range e.out {
					if p.idx != id {
						d.bufs.put(p.idx)
					}
				}
				select {
				case <-d.hops.miss:
				default:
				}
			}
		})
	}
}
