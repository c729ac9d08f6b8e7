package dataplane

import (
	"net/netip"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/neigh"
	"tunnelplane/dataplane/stats"
	"tunnelplane/encap"
)

// tunnel is the per-encapsulation glue between the device side and the
// underlay socket: what to prepend on the way out, what to check and strip
// on the way in. The outer IP header (and the UDP header) are the kernel's
// job: the underlay sockets are UDP sockets or raw IP sockets without
// IP_HDRINCL. A raw IPv4 socket still hands received packets over with the
// outer IPv4 header in front, which decap validates.
type tunnel struct {
	kind     config.EncapType
	l2       bool // TAP mode: the device side is Ethernet
	vni      uint32
	gre      encap.GREHeader // template for egress; Protocol set per packet
	greWant  encap.GREExpect
	ownMAC   [6]byte
	rawV4    bool // raw IPv4 socket: received packets carry the outer header
	neigh    *neigh.Responder
	overhead int // bytes encap prepends in the buffer (not counting the kernel's headers)
	outerLen int // bytes the kernel prepends: outer IP header, and UDP for UDP encaps
	// innerMax is the largest inner packet the device takes as a plain
	// one: its MTU, plus the Ethernet header in TAP mode. Longer ones are
	// super-packets (partial.go).
	innerMax int
}

func newTunnel(cfg *config.Config) *tunnel {
	t := &tunnel{
		kind:   cfg.Encap.Type,
		l2:     cfg.Device.Mode == config.ModeTAP,
		vni:    cfg.Encap.VNI,
		ownMAC: cfg.Device.MAC,
	}
	switch t.kind {
	case config.EncapGRE:
		t.gre = encap.GREHeader{HasChecksum: cfg.Encap.Checksum, HasKey: cfg.Encap.HasKey, Key: cfg.Encap.Key, HasSeq: cfg.Encap.Sequence}
		t.greWant = encap.GREExpect{HasKey: cfg.Encap.HasKey, Key: cfg.Encap.Key}
		t.overhead = t.gre.Len()
		t.rawV4 = cfg.Underlay.Local.Is4()
	case config.EncapVXLAN:
		t.overhead = encap.VXLANLen
		if !t.l2 {
			t.overhead += encap.EthernetLen
			var addrs []netip.Addr
			for _, p := range cfg.Device.Addresses {
				addrs = append(addrs, p.Addr())
			}
			t.neigh = neigh.New(t.ownMAC, addrs)
		}
	case config.EncapIPIP, config.EncapSIT:
		t.rawV4 = cfg.Underlay.Local.Is4()
	}
	t.innerMax = cfg.Device.MTU
	if t.l2 {
		t.innerMax += encap.EthernetLen
	}
	t.outerLen = encap.IPv4Len
	if cfg.Underlay.Local.Is6() {
		t.outerLen = encap.IPv6Len
	}
	if t.rawProto() == 0 {
		t.outerLen += encap.UDPLen
	}
	return t
}

// rawProto is the IP protocol of the raw underlay socket, or 0 for UDP.
func (t *tunnel) rawProto() int {
	switch t.kind {
	case config.EncapIPIP:
		return encap.ProtoIPIP
	case config.EncapSIT:
		return encap.ProtoIPv6
	case config.EncapGRE:
		return encap.ProtoGRE
	}
	return 0
}

// innerL3 is where a UDP tunnel's inner IP header starts in the UDP
// payload (underlay.Options.InnerL3), or -1 for a raw IP tunnel.
func (t *tunnel) innerL3() int {
	switch t.kind {
	case config.EncapVXLAN:
		return encap.VXLANLen + encap.EthernetLen // VXLAN carries Ethernet in either mode
	case config.EncapIPUDP:
		if t.l2 {
			return encap.EthernetLen
		}
		return 0
	}
	return -1
}

// encap prepends this tunnel's headers to the packet b[off:end] (an IP
// packet in TUN mode, an Ethernet frame in TAP mode) bound for p, and
// returns the new start. The caller guarantees off >= encap.MaxOverhead.
func (t *tunnel) encap(b []byte, off, end int, p *Peer) (int, stats.Drop) {
	switch t.kind {
	case config.EncapVXLAN:
		if !t.l2 {
			et := uint16(encap.EtherTypeIPv4)
			if b[off]>>4 == 6 {
				et = encap.EtherTypeIPv6
			}
			off = encap.PushEthernet(b, off, p.MAC, t.ownMAC, et)
		}
		return encap.PushVXLAN(b, off, t.vni), 0
	case config.EncapGRE:
		h := t.gre
		switch {
		case t.l2:
			h.Protocol = encap.EtherTypeTEB
		case b[off]>>4 == 6:
			h.Protocol = encap.EtherTypeIPv6
		default:
			h.Protocol = encap.EtherTypeIPv4
		}
		return encap.PushGRE(b, off, end, &h), 0
	case config.EncapIPIP:
		if b[off]>>4 != 4 {
			return off, stats.DropFamily
		}
	case config.EncapSIT:
		if b[off]>>4 != 6 {
			return off, stats.DropFamily
		}
	}
	return off, 0 // ipip, sit, ipudp: the inner packet is the whole payload
}

// verdict is what decap decided for one received datagram.
type verdict uint8

const (
	toDevice verdict = iota // b[innerOff:innerEnd] goes to the device
	reply                   // b[innerOff:innerEnd] is an answer to send back to the peer
	drop
)

// decap validates and strips the tunnel headers of the datagram b[off:end]
// that came from peer p. In TUN mode it also checks that the inner source
// belongs to p; in TAP mode it learns the inner source MAC. An outer ECN
// CE mark is passed on to the inner packet (RFC 6040, as the kernel's
// tunnels do), or the packet dropped when its inner packet is not
// ECN-capable.
func (t *tunnel) decap(b []byte, off, end int, p *Peer, in *ingressBatch) (innerOff, innerEnd int, v verdict, d stats.Drop) {
	innerOff, innerEnd, v, d = t.strip(b, off, end, p, in)
	if v != toDevice || in.outerTOS&3 != encap.ECNCE {
		return innerOff, innerEnd, v, d
	}
	ipOff := innerOff
	if t.l2 {
		_, _, et, payOff, r := encap.ParseEthernet(b, innerOff, innerEnd)
		if r != encap.OK || et != encap.EtherTypeIPv4 && et != encap.EtherTypeIPv6 {
			return innerOff, innerEnd, v, d // not IP: no ECN field to mark
		}
		ipOff = payOff
	}
	if !encap.ECNDecap(b, ipOff, innerEnd, in.outerTOS) {
		return 0, 0, drop, stats.DropECNNotECT
	}
	return innerOff, innerEnd, v, d
}

// strip is decap without the ECN rule.
func (t *tunnel) strip(b []byte, off, end int, p *Peer, in *ingressBatch) (innerOff, innerEnd int, v verdict, d stats.Drop) {
	var r encap.DropReason
	switch t.kind {
	case config.EncapVXLAN:
		innerOff, r = encap.DecapVXLAN(b, off, end, t.vni)
		innerEnd = end
		if r != encap.OK {
			return 0, 0, drop, stats.Drop(r)
		}
		if t.l2 {
			return t.l2Ingress(b, innerOff, innerEnd, p, in)
		}
		return t.vxlanTUNIngress(b, innerOff, end, p, in)
	case config.EncapGRE:
		var h encap.GREHeader
		if t.rawV4 {
			var outer encap.IPv4Header
			off, end, r = encap.ParseIPv4(b, off, end, &outer)
			in.outerTOS = outer.TOS
			if r == encap.OK && outer.Protocol != encap.ProtoGRE {
				r = encap.DropBadProtocol
			}
			if r != encap.OK {
				return 0, 0, drop, stats.Drop(r)
			}
		}
		innerOff, innerEnd, r = encap.DecapGRE(b, off, end, t.greWant, &h)
		if r != encap.OK {
			return 0, 0, drop, stats.Drop(r)
		}
		if (h.Protocol == encap.EtherTypeTEB) != t.l2 {
			return 0, 0, drop, stats.DropFamily
		}
		if t.l2 {
			return t.l2Ingress(b, innerOff, innerEnd, p, in)
		}
	case config.EncapIPIP:
		if t.rawV4 {
			var outer encap.IPv4Header
			innerOff, innerEnd, r = encap.DecapIPIP(b, off, end, &outer)
			in.outerTOS = outer.TOS
		} else {
			innerOff = off
			innerEnd, r = encap.CheckInner(b, off, end, 4)
		}
	case config.EncapSIT:
		if t.rawV4 {
			var outer encap.IPv4Header
			innerOff, innerEnd, r = encap.DecapSIT(b, off, end, &outer)
			in.outerTOS = outer.TOS
		} else {
			innerOff = off
			innerEnd, r = encap.CheckInner(b, off, end, 6)
		}
	case config.EncapIPUDP:
		innerOff, innerEnd, r = encap.DecapIPUDP(b, off, end)
	}
	if r != encap.OK {
		return 0, 0, drop, stats.Drop(r)
	}
	return t.checkInnerSource(b, innerOff, innerEnd, p, in)
}

func (t *tunnel) checkInnerSource(b []byte, off, end int, p *Peer, in *ingressBatch) (int, int, verdict, stats.Drop) {
	src, _, ok := encap.InnerAddrs(b, off, end)
	if !ok {
		return 0, 0, drop, stats.Drop(encap.DropBadInner)
	}
	if !in.allowed(p, src) {
		return 0, 0, drop, stats.DropSpoofedInner
	}
	return off, end, toDevice, 0
}

// vxlanTUNIngress handles the inner Ethernet frame b[off:end] in TUN mode:
// IP goes to the device without its Ethernet header, ARP requests and
// neighbour solicitations for our addresses are answered in place.
func (t *tunnel) vxlanTUNIngress(b []byte, off, end int, p *Peer, in *ingressBatch) (int, int, verdict, stats.Drop) {
	dst, _, et, payOff, r := encap.ParseEthernet(b, off, end)
	if r != encap.OK {
		return 0, 0, drop, stats.Drop(r)
	}
	if dst != t.ownMAC && dst[0]&1 == 0 {
		return 0, 0, drop, stats.DropNotForUs
	}
	switch et {
	case encap.EtherTypeARP:
		return t.answer(b, off, end)
	case encap.EtherTypeIPv6:
		if res, n := t.neigh.Handle(b, off, end); res == neigh.Replied {
			return off, off + n, reply, 0
		} else if res == neigh.NotForUs {
			return 0, 0, drop, stats.DropNotForUs
		} else if res == neigh.Malformed {
			return 0, 0, drop, stats.DropNeighMalformed
		}
		innerEnd, r := encap.CheckInner(b, payOff, end, 6)
		if r != encap.OK {
			return 0, 0, drop, stats.Drop(r)
		}
		return t.checkInnerSource(b, payOff, innerEnd, p, in)
	case encap.EtherTypeIPv4:
		innerEnd, r := encap.CheckInner(b, payOff, end, 4)
		if r != encap.OK {
			return 0, 0, drop, stats.Drop(r)
		}
		return t.checkInnerSource(b, payOff, innerEnd, p, in)
	}
	return 0, 0, drop, stats.DropBadEtherType
}

func (t *tunnel) answer(b []byte, off, end int) (int, int, verdict, stats.Drop) {
	switch res, n := t.neigh.Handle(b, off, end); res {
	case neigh.Replied:
		return off, off + n, reply, 0
	case neigh.NotForUs:
		return 0, 0, drop, stats.DropNotForUs
	default:
		return 0, 0, drop, stats.DropNeighMalformed
	}
}

// l2Ingress learns the source MAC of a frame from peer p (TAP mode): a MAC
// is bound only to the peer it arrived from, so a peer cannot claim MACs
// for another peer's traffic beyond its own frames.
func (t *tunnel) l2Ingress(b []byte, off, end int, p *Peer, in *ingressBatch) (int, int, verdict, stats.Drop) {
	_, src, _, _, r := encap.ParseEthernet(b, off, end)
	if r != encap.OK {
		return 0, 0, drop, stats.Drop(r)
	}
	if src[0]&1 == 0 { // never learn multicast sources
		if s := in.tbl.static[src]; s != nil && s != p {
			return 0, 0, drop, stats.DropSpoofedInner
		}
		in.tbl.FDB.Learn(src, p.Index, in.now)
	}
	return off, end, toDevice, 0
}

// mayReply reports whether the datagram b[off:end] might be answered in
// place (an ARP or an ICMPv6 message to VXLAN in TUN mode): such a reply
// may grow past its request, so it must not sit in a shared buffer.
func (t *tunnel) mayReply(b []byte, off, end int) bool {
	if t.neigh == nil {
		return false
	}
	eth := off + encap.VXLANLen
	if end-eth < encap.EthernetLen+40 {
		return true
	}
	switch uint16(b[eth+12])<<8 | uint16(b[eth+13]) {
	case encap.EtherTypeIPv4:
		return false
	case encap.EtherTypeIPv6:
		return b[eth+encap.EthernetLen+6] == 58
	}
	return true
}

// encapReply puts the tunnel header back in front of a neighbour reply
// built in place at b[off:] (only VXLAN in TUN mode answers).
func (t *tunnel) encapReply(b []byte, off int) int { return encap.PushVXLAN(b, off, t.vni) }
