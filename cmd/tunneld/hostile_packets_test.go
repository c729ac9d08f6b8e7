//go:build linux

package main

import (
	"encoding/binary"
	"net/netip"
)

// --- packet builders -------------------------------------------------------

func csum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// ip4 describes an IPv4 header to build, with the defects to put in.
type ip4 struct {
	src, dst netip.Addr
	proto    byte
	id       uint16
	frag     uint16 // flags and offset field as on the wire (0x2000 = MF)
	options  int    // bytes of NOP options (multiple of 4)
	badCsum  bool
	version  byte // 0: 4
}

func (h ip4) build(payload []byte) []byte {
	hl := 20 + h.options
	b := make([]byte, hl+len(payload))
	v := h.version
	if v == 0 {
		v = 4
	}
	b[0] = v<<4 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], h.id)
	binary.BigEndian.PutUint16(b[6:], h.frag)
	b[8] = 64
	b[9] = h.proto
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP
	}
	c := csum16(b[:hl])
	if h.badCsum {
		c ^= 0x5555
	}
	binary.BigEndian.PutUint16(b[10:], c)
	copy(b[hl:], payload)
	return b
}

// udp builds a UDP header (checksum 0: none, legal over IPv4) and payload.
func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

// innerUDP is a well-formed inner IPv4/UDP packet from src to A's overlay
// listener with n payload bytes: it reaches the listener unless dropped.
func (h *hostileEnv) innerUDP(src netip.Addr, n int) []byte {
	pl := make([]byte, n)
	for i := range pl {
		pl[i] = 0x5A
	}
	return ip4{src: src, dst: h.oa.Addr(), proto: 17, id: 1}.build(udp(overlayPort, overlayPort, pl))
}

func (h *hostileEnv) good() []byte    { return h.innerUDP(h.ob.Addr(), 64) }
func (h *hostileEnv) spoofed() []byte { return h.innerUDP(netip.MustParseAddr("10.200.0.77"), 64) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func eth(dst, src [6]byte, et uint16) []byte {
	return cat(dst[:], src[:], []byte{byte(et >> 8), byte(et)})
}

func vxlanHdr(flags byte, vni uint32) []byte {
	return []byte{flags, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
}

// outer wraps an IP payload in an outer IPv4 header from src to A; id
// varies per packet so that fragments of different units never mix.
func (h *hostileEnv) outer(src netip.Addr, proto byte, i int, payload []byte) []byte {
	return ip4{src: src, dst: h.la, proto: proto, id: uint16(1000 + i)}.build(payload)
}

// fragments splits an IP payload into two IPv4 fragments (the first
// carrying 16 payload bytes, MF set).
func (h *hostileEnv) fragments(proto byte, i int, payload []byte) [][]byte {
	id := uint16(20000 + i)
	f1 := ip4{src: h.lb, dst: h.la, proto: proto, id: id, frag: 0x2000}.build(payload[:16])
	f2 := ip4{src: h.lb, dst: h.la, proto: proto, id: id, frag: 2}.build(payload[16:])
	return [][]byte{f1, f2}
}

func one(b []byte) func(int) [][]byte { return func(int) [][]byte { return [][]byte{b} } }

// truncatedIPv4 is the first 10 bytes of an IPv4 header.
func truncatedIPv4() []byte { return []byte{0x45, 0, 0, 64, 0, 1, 0, 0, 64, 17} }

// innerDefects are inner IPv4 packets that CheckInner must refuse.
func (h *hostileEnv) innerDefects() (badVersion, badIHL, badTotal []byte) {
	badVersion = h.good()
	badVersion[0] = 0x65 // version 6 in a packet labelled IPv4
	badIHL = h.good()
	badIHL[0] = 0x43 // IHL 3 < 5
	badTotal = h.good()
	binary.BigEndian.PutUint16(badTotal[2:], 1400) // total length beyond the packet
	return
}

// --- the kinds -------------------------------------------------------------

const kernelFragNote = "the kernel reassembles before any socket sees a packet (ip_local_deliver); tunneld's fragment check cannot fire from the wire"

func vxlanKinds(h *hostileEnv) []hostileKind {
	vx := func(i int, payload []byte) []byte {
		return h.outer(h.lb, 17, i, udp(uint16(40000+i%1000), 4789, payload))
	}
	raw := func(name, out string, payload []byte, why string) hostileKind {
		return hostileKind{name: name, out: out, via: viaRaw, why: why,
			pkts: func(i int) [][]byte { return [][]byte{vx(i, payload)} }}
	}
	okHdr := vxlanHdr(0x08, 42)
	toUs := eth(h.macA, h.macB, 0x0800)
	badVersion, badIHL, badTotal := h.innerDefects()
	arp := func(tpa netip.Addr, n int) []byte {
		a := []byte{0, 1, 8, 0, 6, 4, 0, 1}
		a = append(a, h.macB[:]...)
		ob := h.ob.Addr().As4()
		a = append(a, ob[:]...)
		a = append(a, 0, 0, 0, 0, 0, 0)
		tp := tpa.As4()
		a = append(a, tp[:]...)
		return cat(vxlanHdr(0x08, 42), eth([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, h.macB, 0x0806), a[:n])
	}
	big := h.innerUDP(h.ob.Addr(), 9000-8-14-20-8)
	return []hostileKind{
		raw("vxlan: 4-byte VXLAN header", "truncated", okHdr[:4], "DecapVXLAN: < 8 bytes"),
		raw("vxlan: I flag clear", "bad_flags", cat(vxlanHdr(0x00, 42), toUs, h.good()), ""),
		raw("vxlan: VNI 7 instead of 42", "bad_vni", cat(vxlanHdr(0x08, 7), toUs, h.good()), ""),
		raw("vxlan: 6 bytes of inner Ethernet", "truncated", cat(okHdr, toUs[:6]), ""),
		raw("vxlan: inner EtherType 0x88b5", "bad_ethertype", cat(okHdr, eth(h.macA, h.macB, 0x88b5), h.good()), ""),
		raw("vxlan: inner IPv4 version nibble 6", "bad_inner", cat(okHdr, toUs, badVersion), ""),
		raw("vxlan: inner IPv4 IHL 3", "bad_inner", cat(okHdr, toUs, badIHL), ""),
		raw("vxlan: inner IPv4 total length > data", "bad_inner", cat(okHdr, toUs, badTotal), ""),
		raw("vxlan: inner IPv4 header of 10 bytes", "truncated", cat(okHdr, toUs, truncatedIPv4()), ""),
		raw("vxlan: inner dst MAC 02:00:00:00:99:99", "not_for_us", cat(okHdr, eth([6]byte{2, 0, 0, 0, 0x99, 0x99}, h.macB, 0x0800), h.good()), ""),
		raw("vxlan: ARP request for 10.200.0.99", "not_for_us", arp(netip.MustParseAddr("10.200.0.99"), 28), ""),
		raw("vxlan: ARP request cut at 20 bytes", "neigh_malformed", arp(h.oa.Addr(), 20), ""),
		raw("vxlan: inner source 10.200.0.77", "spoofed_inner", cat(okHdr, toUs, h.spoofed()), "peer B owns 10.200.0.2/32 only"),
		{name: "vxlan: valid, from 10.99.0.3 (no peer)", out: "unknown_peer", via: viaRaw,
			pkts: func(i int) [][]byte {
				return [][]byte{h.outer(h.unknown, 17, i, udp(40000, 4789, cat(okHdr, toUs, h.good())))}
			}},
		{name: "vxlan: bad outer IPv4 header checksum", out: outKernel, via: viaLink, snmp: "Ip.InHdrErrors",
			why: "ip_rcv drops it (InHdrErrors); IP_HDRINCL would fix the checksum, so sent on AF_PACKET",
			pkts: func(i int) [][]byte {
				return [][]byte{ip4{src: h.lb, dst: h.la, proto: 17, id: uint16(i), badCsum: true}.build(udp(40000, 4789, cat(okHdr, toUs, h.good())))}
			}},
		{name: "vxlan: bad outer UDP checksum", out: outKernel, via: viaRaw, snmp: "Udp.InCsumErrors",
			why: "the UDP socket discards it on receive (InCsumErrors)",
			pkts: func(i int) [][]byte {
				u := udp(40000, 4789, cat(okHdr, toUs, h.good()))
				binary.BigEndian.PutUint16(u[6:], 0x1234)
				return [][]byte{h.outer(h.lb, 17, i, u)}
			}},
		{name: "vxlan: outer first fragment only (MF)", out: outKernel, via: viaRaw, snmp: "Ip.ReasmReqds",
			why: "waits in A's reassembly queue, then expires: " + kernelFragNote,
			pkts: func(i int) [][]byte {
				return h.fragments(17, i, udp(40000, 4789, cat(okHdr, toUs, h.spoofed())))[:1]
			}},
		{name: "vxlan: 2 outer fragments, spoofed inner", out: "spoofed_inner", via: viaRaw, snmp: "Ip.ReasmOKs",
			why:  kernelFragNote,
			pkts: func(i int) [][]byte { return h.fragments(17, i, udp(40000, 4789, cat(okHdr, toUs, h.spoofed()))) }},
		{name: "vxlan: 9000-byte datagram (valid inner)", out: outDelivered, via: viaUDP, snmp: "Ip.ReasmOKs",
			why:  "B fragments, A reassembles; the 8978-byte inner packet is written to tp0 (MTU 1450) as is, as the kernel's vxlan does",
			pkts: one(cat(okHdr, toUs, big))},
		{name: "vxlan: 9000-byte datagram, VNI 7", out: "bad_vni", via: viaUDP, snmp: "Ip.ReasmOKs",
			pkts: one(cat(vxlanHdr(0x08, 7), toUs, big))},
	}
}

// greHdr builds a GRE header: flags byte 0 and 1, protocol, and the
// optional checksum (computed over header and payload, then xored with
// csumXor) and key.
func greHdr(b0, b1 byte, proto uint16, key *uint32, csumXor uint16, payload []byte) []byte {
	g := []byte{b0, b1, byte(proto >> 8), byte(proto)}
	csumAt := -1
	if b0&0x80 != 0 {
		csumAt = len(g)
		g = append(g, 0, 0, 0, 0)
	}
	if key != nil {
		g = binary.BigEndian.AppendUint32(g, *key)
	}
	g = append(g, payload...)
	if csumAt >= 0 {
		binary.BigEndian.PutUint16(g[csumAt:], csum16(g)^csumXor)
	}
	return g
}

func greKinds(h *hostileEnv) []hostileKind {
	key, wrong := uint32(7), uint32(8)
	raw := func(name, out string, gre []byte, why string) hostileKind {
		return hostileKind{name: name, out: out, via: viaRaw, why: why,
			pkts: func(i int) [][]byte { return [][]byte{h.outer(h.lb, 47, i, gre)} }}
	}
	good := h.good()
	badVersion, badIHL, badTotal := h.innerDefects()
	big := h.innerUDP(h.ob.Addr(), 9000-8-20-8)
	return []hostileKind{
		raw("gre: 2-byte GRE header", "truncated", []byte{0x20, 0}, ""),
		raw("gre: version 1", "bad_flags", greHdr(0x20, 0x01, 0x0800, &key, 0, good), ""),
		raw("gre: routing bit", "bad_flags", greHdr(0x60, 0, 0x0800, &key, 0, good), ""),
		raw("gre: K set, key field missing", "truncated", []byte{0x20, 0, 0x08, 0}, ""),
		raw("gre: no key", "bad_key", greHdr(0x00, 0, 0x0800, nil, 0, good), ""),
		raw("gre: key 8 instead of 7", "bad_key", greHdr(0x20, 0, 0x0800, &wrong, 0, good), ""),
		raw("gre: bad GRE checksum (C bit)", "bad_checksum", greHdr(0xa0, 0, 0x0800, &key, 0x5555, good), ""),
		raw("gre: protocol type 0x88b5", "bad_protocol", greHdr(0x20, 0, 0x88b5, &key, 0, good), ""),
		raw("gre: 0x6558 (Ethernet) into TUN", "family", greHdr(0x20, 0, 0x6558, &key, 0, cat(eth(h.macA, h.macB, 0x0800), good)), "TEB needs mode tap"),
		raw("gre: inner IPv4 header of 10 bytes", "truncated", greHdr(0x20, 0, 0x0800, &key, 0, truncatedIPv4()), ""),
		raw("gre: inner IPv4 version nibble 6", "bad_inner", greHdr(0x20, 0, 0x0800, &key, 0, badVersion), ""),
		raw("gre: inner IPv4 IHL 3", "bad_inner", greHdr(0x20, 0, 0x0800, &key, 0, badIHL), ""),
		raw("gre: inner IPv4 total length > data", "bad_inner", greHdr(0x20, 0, 0x0800, &key, 0, badTotal), ""),
		raw("gre: inner source 10.200.0.77", "spoofed_inner", greHdr(0x20, 0, 0x0800, &key, 0, h.spoofed()), ""),
		raw("gre: good checksum+seq, spoofed inner", "spoofed_inner", greHdr(0xb0, 0, 0x0800, &key, 0, cat([]byte{0, 0, 0, 9}, h.spoofed())), "C/K/S all parsed; the seq word sits after the key"),
		{name: "gre: outer IPv4 options (IHL 6), spoofed", out: "spoofed_inner", via: viaRaw, why: "outer IHL > 5 parsed",
			pkts: func(i int) [][]byte {
				return [][]byte{ip4{src: h.lb, dst: h.la, proto: 47, id: uint16(i), options: 4}.build(greHdr(0x20, 0, 0x0800, &key, 0, h.spoofed()))}
			}},
		{name: "gre: valid, from 10.99.0.3 (no peer)", out: "unknown_peer", via: viaRaw,
			pkts: func(i int) [][]byte {
				return [][]byte{h.outer(h.unknown, 47, i, greHdr(0x20, 0, 0x0800, &key, 0, good))}
			}},
		{name: "gre: bad outer IPv4 header checksum", out: outKernel, via: viaLink, snmp: "Ip.InHdrErrors",
			why: "ip_rcv drops it (InHdrErrors); sent on AF_PACKET",
			pkts: func(i int) [][]byte {
				return [][]byte{ip4{src: h.lb, dst: h.la, proto: 47, id: uint16(i), badCsum: true}.build(greHdr(0x20, 0, 0x0800, &key, 0, good))}
			}},
		{name: "gre: outer version 5", out: outKernel, via: viaLink, snmp: "Ip.InHdrErrors",
			why: "ip_rcv drops it: bad_version cannot fire from the wire",
			pkts: func(i int) [][]byte {
				return [][]byte{ip4{src: h.lb, dst: h.la, proto: 47, id: uint16(i), version: 5}.build(greHdr(0x20, 0, 0x0800, &key, 0, good))}
			}},
		{name: "gre: outer first fragment only (MF)", out: outKernel, via: viaRaw, snmp: "Ip.ReasmReqds",
			why: "expires in A's reassembly queue: " + kernelFragNote,
			pkts: func(i int) [][]byte {
				return h.fragments(47, i, greHdr(0x20, 0, 0x0800, &key, 0, h.spoofed()))[:1]
			}},
		{name: "gre: 2 outer fragments, spoofed inner", out: "spoofed_inner", via: viaRaw, snmp: "Ip.ReasmOKs",
			why:  kernelFragNote,
			pkts: func(i int) [][]byte { return h.fragments(47, i, greHdr(0x20, 0, 0x0800, &key, 0, h.spoofed())) }},
		{name: "gre: 9000-byte packet (valid inner)", out: outDelivered, via: viaIP, snmp: "Ip.ReasmOKs",
			why:  "B fragments, A reassembles; the ~9 KB inner packet is written to tp0 (MTU 1450) as is",
			pkts: one(greHdr(0x20, 0, 0x0800, &key, 0, big))},
		{name: "gre: 9000-byte packet, key 8", out: "bad_key", via: viaIP, snmp: "Ip.ReasmOKs",
			pkts: one(greHdr(0x20, 0, 0x0800, &wrong, 0, big))},
	}
}

func ipipKinds(h *hostileEnv) []hostileKind {
	raw := func(name, out string, inner []byte, why string) hostileKind {
		return hostileKind{name: name, out: out, via: viaRaw, why: why,
			pkts: func(i int) [][]byte { return [][]byte{h.outer(h.lb, 4, i, inner)} }}
	}
	badVersion, badIHL, badTotal := h.innerDefects()
	return []hostileKind{
		raw("ipip: empty payload", "truncated", nil, ""),
		raw("ipip: inner IPv4 header of 10 bytes", "truncated", truncatedIPv4(), ""),
		raw("ipip: inner version nibble 6", "bad_inner", badVersion, ""),
		raw("ipip: inner IPv4 IHL 3", "bad_inner", badIHL, ""),
		raw("ipip: inner IPv4 total length > data", "bad_inner", badTotal, ""),
		raw("ipip: inner source 10.200.0.77", "spoofed_inner", h.spoofed(), ""),
		{name: "ipip: valid, from 10.99.0.3 (no peer)", out: "unknown_peer", via: viaRaw,
			pkts: func(i int) [][]byte { return [][]byte{h.outer(h.unknown, 4, i, h.good())} }},
		{name: "ipip: bad outer IPv4 header checksum", out: outKernel, via: viaLink, snmp: "Ip.InHdrErrors",
			why: "ip_rcv drops it (InHdrErrors)",
			pkts: func(i int) [][]byte {
				return [][]byte{ip4{src: h.lb, dst: h.la, proto: 4, id: uint16(i), badCsum: true}.build(h.good())}
			}},
		{name: "ipip: 2 outer fragments, spoofed inner", out: "spoofed_inner", via: viaRaw, snmp: "Ip.ReasmOKs",
			why:  kernelFragNote,
			pkts: func(i int) [][]byte { return h.fragments(4, i, h.spoofed()) }},
		{name: "ipip: 9000-byte packet (valid inner)", out: outDelivered, via: viaIP, snmp: "Ip.ReasmOKs",
			why:  "B fragments, A reassembles; the ~9 KB inner packet is written to tp0 (MTU 1450) as is",
			pkts: one(h.innerUDP(h.ob.Addr(), 9000-20-20-8))},
	}
}
