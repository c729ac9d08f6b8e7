package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/dataplane/underlay/underlaytest"
	"tunnelplane/encap"
)

// What a kernel peer sends over a veth with offloads on, crafted: inner
// packets whose checksum is partial, and GSO super-packets, inside every
// encapsulation, through the real underlay reader into recording devices
// (a virtio-header device whose writes land on a socket pair, and a plain
// one). gopacket decodes what the device got and recomputes every
// checksum independently.

// The receiving side ("B"): its overlay address and its peer, whose inner
// packets come from 10.200.0.1 / fd00:200::1 (superPacket's sources).
func partialConfig(mode, encapBody string, v4only, v6only bool) string {
	addrs, prefixes := "10.200.0.2/24, fd00:200::2/64", "10.200.0.1/32, fd00:200::1/128"
	switch {
	case v4only:
		addrs, prefixes = "10.200.0.2/24", "10.200.0.1/32"
	case v6only:
		addrs, prefixes = "fd00:200::2/64", "fd00:200::1/128"
	}
	return fmt.Sprintf(`
device:
  name: tpb
  mode: %s
  addresses: [%s]
  mac: 02:00:00:00:02:02
encap:
%sunderlay:
  local: 10.99.0.2
peers:
  - remote: 10.99.0.1
    prefixes: [%s]
    mac: 02:00:00:00:01:01
`, mode, addrs, encapBody, prefixes)
}

// recDevice records the packets written to it. With a vnetFile it is a
// device with the virtio header: the data path's writev calls land on one
// end of a SOCK_SEQPACKET pair, one record per write (without, vnet
// returns no file, as a device without the header).
type recDevice struct {
	devicetest.Fake
	vnetFile *os.File // our end, handed to the vnet writer
	peer     int      // the test's end
	l2       int
	uso      bool
	plain    [][]byte
}

func (r *recDevice) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		r.plain = append(r.plain, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}

func (r *recDevice) Vnet() (*os.File, int, bool) { return r.vnetFile, r.l2, r.uso }

var _ device.Vnet = (*recDevice)(nil)

func newRecDevice(t *testing.T, vnet bool, l2 int, uso bool) device.Device {
	r := &recDevice{l2: l2, uso: uso, peer: -1}
	if !vnet {
		return r
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	unix.SetNonblock(fds[0], true)
	unix.SetNonblock(fds[1], true)
	r.vnetFile, r.peer = os.NewFile(uintptr(fds[0]), "vnet-rec"), fds[1]
	t.Cleanup(func() { r.vnetFile.Close(); unix.Close(fds[1]) })
	return r
}

// devWrite is one write the device got: the virtio header (zero for a
// plain device) and the frame or packet.
type devWrite struct {
	h   device.VirtioHdr
	pkt []byte
}

func (r *recDevice) writes(t *testing.T) []devWrite {
	var out []devWrite
	for _, p := range r.plain {
		out = append(out, devWrite{pkt: p})
	}
	if r.peer < 0 {
		return out
	}
	buf := make([]byte, 1<<17)
	for {
		n, err := unix.Read(r.peer, buf)
		if err != nil || n == 0 {
			return out
		}
		if n < device.VirtioHdrLen {
			t.Fatalf("device write of %d bytes: no virtio header", n)
		}
		out = append(out, devWrite{h: device.ParseVirtioHdr(buf), pkt: append([]byte(nil), buf[device.VirtioHdrLen:n]...)})
	}
}

func recOf(dev device.Device) *recDevice { return dev.(*recDevice) }

// encapCase is one encapsulation: its config and how the peer wraps an
// inner packet (IP, or Ethernet in TAP mode) into what the underlay socket
// hands over (raw IPv4 sockets include the outer IPv4 header).
type encapCase struct {
	name, mode, body string
	l2               bool
	v4only, v6only   bool
	udpUnderlay      bool // the kernel reports a UDP-tunnel GSO datagram's inner segment size
	wrap             func(inner []byte, v6 bool) []byte
}

func ethFrame(inner []byte, v6 bool) []byte {
	et := uint16(encap.EtherTypeIPv4)
	if v6 {
		et = encap.EtherTypeIPv6
	}
	b := make([]byte, encap.EthernetLen+len(inner))
	copy(b[encap.EthernetLen:], inner)
	encap.PushEthernet(b, encap.EthernetLen, [6]byte{2, 0, 0, 0, 2, 2}, [6]byte{2, 0, 0, 0, 1, 1}, et)
	return b
}

func vxlanWrap(frame []byte) []byte {
	b := make([]byte, encap.VXLANLen+len(frame))
	copy(b[encap.VXLANLen:], frame)
	encap.PushVXLAN(b, encap.VXLANLen, 42)
	return b
}

// outerIPv4 prepends what a raw IPv4 socket shows: the outer header.
func outerIPv4(payload []byte, proto uint8) []byte {
	b := make([]byte, encap.IPv4Len+len(payload))
	copy(b[encap.IPv4Len:], payload)
	encap.PushIPv4(b, encap.IPv4Len, len(b), &encap.IPv4Header{
		Src: netip.MustParseAddr("10.99.0.1"), Dst: netip.MustParseAddr("10.99.0.2"), Protocol: proto, TTL: 64})
	return b
}

func greWrap(payload []byte, proto uint16) []byte {
	h := encap.GREHeader{Protocol: proto}
	b := make([]byte, h.Len()+len(payload))
	copy(b[h.Len():], payload)
	encap.PushGRE(b, h.Len(), len(b), &h)
	return outerIPv4(b, encap.ProtoGRE)
}

var partialEncaps = []encapCase{
	{name: "vxlan-tun", mode: "tun", body: "  type: vxlan\n  vni: 42\n", udpUnderlay: true,
		wrap: func(in []byte, v6 bool) []byte { return vxlanWrap(ethFrame(in, v6)) }},
	{name: "vxlan-tap", mode: "tap", body: "  type: vxlan\n  vni: 42\n", l2: true, udpUnderlay: true,
		wrap: func(in []byte, v6 bool) []byte { return vxlanWrap(in) }},
	{name: "ipip", mode: "tun", body: "  type: ipip\n", v4only: true,
		wrap: func(in []byte, v6 bool) []byte { return outerIPv4(in, encap.ProtoIPIP) }},
	{name: "sit", mode: "tun", body: "  type: sit\n", v6only: true,
		wrap: func(in []byte, v6 bool) []byte { return outerIPv4(in, encap.ProtoIPv6) }},
	{name: "gre", mode: "tun", body: "  type: gre\n",
		wrap: func(in []byte, v6 bool) []byte {
			if v6 {
				return greWrap(in, encap.EtherTypeIPv6)
			}
			return greWrap(in, encap.EtherTypeIPv4)
		}},
	{name: "gre-teb", mode: "tap", body: "  type: gre\n", l2: true,
		wrap: func(in []byte, v6 bool) []byte { return greWrap(in, encap.EtherTypeTEB) }},
}

// ingressOnce runs the underlay reader over one datagram into dev.
func ingressOnce(t *testing.T, ec encapCase, dev device.Device, dgram []byte) *Dataplane {
	return ingressOnceGSO(t, ec, dev, dgram, 0)
}

// ingressOnceGSO is ingressOnce for a datagram the kernel reports with a
// UDP_GRO segment size.
func ingressOnceGSO(t *testing.T, ec encapCase, dev device.Device, dgram []byte, gso int) *Dataplane {
	t.Helper()
	conn := &underlaytest.Fake{Dgram: dgram, From: netip.MustParseAddrPort("10.99.0.1:4789"), Left: 1, GSO: gso}
	d, q := newTestDataplaneWith(t, partialConfig(ec.mode, ec.body, ec.v4only, ec.v6only), "direct", dev, conn)
	d.wg.Add(1)
	d.routineUnderlayReader(q) // returns when the fake socket reports closed
	if d.bufs.small.Free() != d.bufs.small.Cap() || d.bufs.large.Free() != d.bufs.large.Cap() {
		t.Fatalf("buffers leaked: small %d/%d large %d/%d", d.bufs.small.Free(), d.bufs.small.Cap(), d.bufs.large.Free(), d.bufs.large.Cap())
	}
	return d
}

// completeAsKernel does what the kernel does with a NEEDS_CSUM write:
// the sum from csum_start on, stored at csum_start+csum_offset.
func completeAsKernel(t *testing.T, w devWrite) []byte {
	t.Helper()
	p := append([]byte(nil), w.pkt...)
	at := w.h.CsumStart + w.h.CsumOffset
	if w.h.CsumStart >= len(p) || at+2 > len(p) {
		t.Fatalf("csum_start %d offset %d outside %d bytes", w.h.CsumStart, w.h.CsumOffset, len(p))
	}
	c := ^encap.Fold(encap.Sum(p[w.h.CsumStart:], 0))
	binary.BigEndian.PutUint16(p[at:], c)
	return p
}

func TestIngressPartialChecksums(t *testing.T) {
	for _, ec := range partialEncaps {
		for _, v6 := range []bool{false, true} {
			if (v6 && ec.v4only) || (!v6 && ec.v6only) {
				continue
			}
			for _, udp := range []bool{false, true} {
				for _, vnet := range []bool{true, false} {
					name := fmt.Sprintf("%s/v6=%v/udp=%v/vnet=%v", ec.name, v6, udp, vnet)
					t.Run(name, func(t *testing.T) {
						inner, payload := devicetest.SuperPacket(t, v6, udp, 600, devicetest.FlagACK|devicetest.FlagPSH)
						l2 := 0
						frame := inner
						if ec.l2 {
							l2, frame = encap.EthernetLen, ethFrame(inner, v6)
						}
						dev := newRecDevice(t, vnet, l2, true)
						d := ingressOnce(t, ec, dev, ec.wrap(frame, v6))
						ws := recOf(dev).writes(t)
						if len(ws) != 1 {
							t.Fatalf("device got %d writes, want 1 (drops %v)", len(ws), d.Stats().Drops)
						}
						w := ws[0]
						if !bytes.Equal(w.pkt[:l2], frame[:l2]) {
							t.Fatalf("Ethernet header changed")
						}
						ip := w.pkt[l2:]
						if vnet {
							// The kernel is told to finish the checksum.
							iphl := 20
							if v6 {
								iphl = 40
							}
							off := 16
							if udp {
								off = 6
							}
							if w.h.Flags != device.VirtioNeedsCsum || w.h.GSOType != device.VirtioGSONone || w.h.CsumStart != l2+iphl || w.h.CsumOffset != off {
								t.Fatalf("virtio header %+v, want NEEDS_CSUM at %d+%d", w.h, l2+iphl, off)
							}
							ip = completeAsKernel(t, w)[l2:]
						}
						if got := devicetest.CheckL4(t, ip); !bytes.Equal(got, payload) {
							t.Fatalf("payload differs")
						}
						if s := d.Stats(); s.PartialChecksums != 1 || len(s.Drops) != 0 {
							t.Fatalf("stats: partial %d drops %v", s.PartialChecksums, s.Drops)
						}
					})
				}
			}
		}
	}
}

// TestIngressSuperPackets: inner TCP super-packets (no segment size
// from the kernel: cut at what the MTU carries), and inner UDP ones over
// a UDP underlay, where the kernel reports the sender's segment size
// (UDP_GRO) and the datagram boundaries must come back exactly. Over raw
// sockets nothing says where UDP datagrams end, so a big one goes whole.
func TestIngressSuperPackets(t *testing.T) {
	const pay, udpGSO = 20000, 1200
	for _, ec := range partialEncaps {
		for _, v6 := range []bool{false, true} {
			if (v6 && ec.v4only) || (!v6 && ec.v6only) {
				continue
			}
			for _, udp := range []bool{false, true} {
				for _, dv := range []struct {
					name      string
					vnet, uso bool
				}{{"vnet-uso", true, true}, {"vnet", true, false}, {"plain", false, false}} {
					name := fmt.Sprintf("%s/v6=%v/udp=%v/%s", ec.name, v6, udp, dv.name)
					t.Run(name, func(t *testing.T) {
						inner, payload := devicetest.SuperPacket(t, v6, udp, pay, devicetest.FlagACK|devicetest.FlagPSH)
						l2 := 0
						frame := inner
						if ec.l2 {
							l2, frame = encap.EthernetLen, ethFrame(inner, v6)
						}
						dgram := ec.wrap(frame, v6)
						gso := 0
						if udp && ec.udpUnderlay {
							gso = udpGSO
						}
						dev := newRecDevice(t, dv.vnet, l2, dv.uso)
						d := ingressOnceGSO(t, ec, dev, dgram, gso)
						mtu := d.cfg.Device.MTU
						iphl := 20
						if v6 {
							iphl = 40
						}
						seg := mtu - iphl - 32 // TCP with timestamps
						if udp {
							seg = udpGSO
						}
						ws := recOf(dev).writes(t)
						if udp && gso == 0 {
							// One datagram, whole, its checksum completed.
							if len(ws) != 1 || len(ws[0].pkt) != len(frame) || ws[0].h.GSOType != device.VirtioGSONone {
								t.Fatalf("want the datagram whole: %d writes", len(ws))
							}
							w := ws[0]
							ip := w.pkt[l2:]
							if w.h.Flags == device.VirtioNeedsCsum {
								ip = completeAsKernel(t, w)[l2:]
							}
							if got := devicetest.CheckL4(t, ip); !bytes.Equal(got, payload) {
								t.Fatalf("payload differs")
							}
							if s := d.Stats(); len(s.Drops) != 0 || s.SuperPackets != 0 {
								t.Fatalf("stats %+v", s)
							}
							return
						}
						if dv.vnet && (!udp || dv.uso) {
							if len(ws) != 1 {
								t.Fatalf("device got %d writes, want 1 GSO packet (drops %v)", len(ws), d.Stats().Drops)
							}
							w := ws[0]
							want := uint8(device.VirtioGSOTCPv4)
							switch {
							case udp:
								want = device.VirtioGSOUDPL4
							case v6:
								want = device.VirtioGSOTCPv6
							}
							if w.h.Flags != device.VirtioNeedsCsum || w.h.GSOType != want || w.h.GSOSize != seg || w.h.CsumStart != l2+iphl {
								t.Fatalf("virtio header %+v, want gso %d size %d csum_start %d", w.h, want, seg, l2+iphl)
							}
							// The kernel segments it (device.SplitSuper cuts as the
							// kernel would).
							bufs, sizes := make([][]byte, 64), make([]int, 64)
							for i := range bufs {
								bufs[i] = make([]byte, 2048)
							}
							n, err := device.SplitSuper(append([]byte(nil), w.pkt...), w.h, l2, bufs, sizes, 0)
							if err != nil {
								t.Fatal(err)
							}
							ws = ws[:0]
							for i := range n {
								ws = append(ws, devWrite{pkt: bufs[i][:sizes[i]]})
							}
						}
						var got []byte
						for i, w := range ws {
							if w.h.GSOType != device.VirtioGSONone || w.h.Flags != 0 {
								t.Fatalf("split segment with virtio header %+v", w.h)
							}
							if len(w.pkt)-l2 > mtu {
								t.Fatalf("segment of %d bytes over MTU %d", len(w.pkt)-l2, mtu)
							}
							p := devicetest.CheckL4(t, w.pkt[l2:])
							if i < len(ws)-1 && len(p) != seg {
								t.Fatalf("segment %d carries %d bytes, want %d", i, len(p), seg)
							}
							got = append(got, p...)
						}
						if !bytes.Equal(got, payload) {
							t.Fatalf("payload: %d bytes in %d segments, want %d", len(got), len(ws), len(payload))
						}
						s := d.Stats()
						if s.SuperPackets != 1 || len(s.Drops) != 0 {
							t.Fatalf("stats: supers %d drops %v", s.SuperPackets, s.Drops)
						}
					})
				}
			}
		}
	}
}

// TestIngressOversizeAndCorrupt: what is not a partial checksum or a
// TCP/UDP super-packet is not treated as one.
func TestIngressOversizeAndCorrupt(t *testing.T) {
	ec := partialEncaps[0] // vxlan-tun
	t.Run("corrupt-small", func(t *testing.T) {
		inner, _ := devicetest.SuperPacket(t, false, false, 600, devicetest.FlagACK)
		inner[20+16] ^= 0x5a // neither the correct checksum nor the pseudo-header sum
		for _, vnet := range []bool{true, false} {
			dev := newRecDevice(t, vnet, 0, true)
			d := ingressOnce(t, ec, dev, ec.wrap(inner, false))
			ws := recOf(dev).writes(t)
			if len(ws) != 1 || ws[0].h != (device.VirtioHdr{}) || !bytes.Equal(ws[0].pkt, inner) {
				t.Fatalf("vnet=%v: want the packet as it is with no offload (the kernel drops it), got %d writes %+v", vnet, len(ws), ws)
			}
			if s := d.Stats(); s.PartialChecksums != 0 {
				t.Fatalf("vnet=%v: counted as partial", vnet)
			}
		}
	})
	t.Run("corrupt-super", func(t *testing.T) {
		inner, _ := devicetest.SuperPacket(t, false, false, 20000, devicetest.FlagACK)
		inner[20+16] ^= 0x5a
		dev := newRecDevice(t, true, 0, true)
		d := ingressOnce(t, ec, dev, ec.wrap(inner, false))
		if ws := recOf(dev).writes(t); len(ws) != 0 {
			t.Fatalf("%d writes, want none", len(ws))
		}
		if s := d.Stats(); s.Drops["inner_checksum"] != 1 {
			t.Fatalf("drops %v, want inner_checksum", s.Drops)
		}
	})
	t.Run("oversize-icmp", func(t *testing.T) {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: []byte{10, 200, 0, 1}, DstIP: []byte{10, 200, 0, 2}}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)}
		inner := devicetest.Serialize(t, ip, icmp, gopacket.Payload(make([]byte, 3000)))
		dev := newRecDevice(t, true, 0, true)
		d := ingressOnce(t, ec, dev, ec.wrap(inner, false))
		if ws := recOf(dev).writes(t); len(ws) != 0 {
			t.Fatalf("%d writes, want none", len(ws))
		}
		if s := d.Stats(); s.Drops["inner_oversize"] != 1 {
			t.Fatalf("drops %v, want inner_oversize", s.Drops)
		}
	})
	t.Run("complete-super", func(t *testing.T) {
		// A super-packet with a complete, correct checksum is taken too.
		inner, payload := devicetest.SuperPacket(t, false, false, 20000, devicetest.FlagACK)
		binary.BigEndian.PutUint16(inner[20+16:], ^encap.Fold(encap.Sum(inner[20:], 0)))
		dev := newRecDevice(t, false, 0, false)
		d := ingressOnce(t, ec, dev, ec.wrap(inner, false))
		var got []byte
		for _, w := range recOf(dev).writes(t) {
			got = append(got, devicetest.CheckL4(t, w.pkt)...)
		}
		if !bytes.Equal(got, payload) || d.Stats().SuperPackets != 1 {
			t.Fatalf("payload %d bytes, supers %d", len(got), d.Stats().SuperPackets)
		}
	})
}

// FuzzIngressOffload feeds arbitrary datagrams, seeded with partial
// checksums and super-packets, through the underlay reader into a virtio
// and a plain device, for each encapsulation. Nothing may panic or leak a
// buffer (ingressOnce checks the pools), every virtio header must point
// inside its packet, and nothing but a whole UDP datagram longer than the
// device MTU may reach a device without GSO.
func FuzzIngressOffload(f *testing.F) {
	for i, ec := range partialEncaps {
		for _, pay := range []int{600, 20000} {
			for _, udp := range []bool{false, true} {
				inner, _ := devicetest.SuperPacket(f, ec.v6only, udp, pay, devicetest.FlagACK)
				frame := inner
				if ec.l2 {
					frame = ethFrame(inner, ec.v6only)
				}
				f.Add(uint8(i), ec.wrap(frame, ec.v6only))
			}
		}
	}
	// Small pools: a fresh data plane per input must be cheap.
	small, large := testPoolSmall, testPoolLarge
	testPoolSmall, testPoolLarge = 256, 8
	f.Cleanup(func() { testPoolSmall, testPoolLarge = small, large })
	f.Fuzz(func(t *testing.T, sel uint8, dgram []byte) {
		if len(dgram) > 65000 {
			return
		}
		ec := partialEncaps[int(sel)%len(partialEncaps)]
		vnet, uso := sel&0x10 != 0, sel&0x20 != 0
		l2 := 0
		if ec.l2 {
			l2 = encap.EthernetLen
		}
		dev := newRecDevice(t, vnet, l2, uso)
		gso := 0
		if sel&0x40 != 0 {
			gso = 1 + int(sel&0x0f)*100 // a UDP_GRO segment size, as for a tunnel GSO datagram
		}
		d := ingressOnceGSO(t, ec, dev, dgram, gso)
		for _, w := range recOf(dev).writes(t) {
			if w.h.Flags&device.VirtioNeedsCsum != 0 && (w.h.CsumStart >= len(w.pkt) || w.h.CsumStart+w.h.CsumOffset+2 > len(w.pkt)) {
				t.Fatalf("virtio header %+v outside a %d-byte packet", w.h, len(w.pkt))
			}
			if w.h.GSOType == device.VirtioGSONone && len(w.pkt)-l2 > d.cfg.Device.MTU {
				// Only a UDP datagram may go whole (its boundaries are the
				// application's).
				if !isUDP(w.pkt[l2:]) {
					t.Fatalf("%d-byte packet without GSO, MTU %d, not UDP", len(w.pkt)-l2, d.cfg.Device.MTU)
				}
			}
			if w.h.GSOType != device.VirtioGSONone && (w.h.GSOSize <= 0 || w.h.GSOSize > d.cfg.Device.MTU) {
				t.Fatalf("gso_size %d, MTU %d", w.h.GSOSize, d.cfg.Device.MTU)
			}
		}
	})
}

// isUDP reports whether the IP packet p carries UDP.
func isUDP(p []byte) bool {
	if p[0]>>4 == 6 {
		return p[6] == encap.ProtoUDP
	}
	return p[9] == encap.ProtoUDP
}
