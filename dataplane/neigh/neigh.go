package neigh

import (
	"encoding/binary"
	"net/netip"
)

// MAC is an Ethernet (EUI-48) address.
type MAC = [6]byte

// Frame layout constants.
const (
	ethHdrLen     = 14
	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD

	// ARPReplyLen is the length of an ARP reply frame: Ethernet 14 + ARP 28.
	ARPReplyLen = ethHdrLen + arpLen
	// MinFrameLen is the Ethernet minimum frame length without FCS. ARP
	// replies are zero-padded to it when the buffer has room.
	MinFrameLen = 60
	// NAReplyLen is the length of a Neighbour Advertisement frame:
	// Ethernet 14 + IPv6 40 + ICMPv6 NA 24 + Target Link-Layer Address option 8.
	NAReplyLen = ethHdrLen + ipv6HdrLen + naLen
	// MaxReplyLen is the most room a reply needs in b[off:].
	MaxReplyLen = NAReplyLen
)

// Responder answers for a fixed set of own addresses. Build it once with New;
// it is read-only afterwards and safe for concurrent use. The zero value owns
// no address and answers with the zero MAC; use New.
type Responder struct {
	mac MAC
	// A node has one or two overlay addresses; a linear scan over a short
	// array beats a map lookup and keeps Owns allocation-free.
	v4 [][4]byte
	v6 [][16]byte
}

// New returns a Responder answering for addrs with mac. mac should be a
// unicast address (the group bit clear). Invalid addresses are ignored, zones
// are dropped, IPv4-mapped IPv6 addresses count as their IPv4 address and
// duplicates are removed. The slice is copied; the caller may reuse it.
func New(mac MAC, addrs []netip.Addr) *Responder {
	r := &Responder{mac: mac}
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap()
		if a.Is4() {
			if v := a.As4(); !r.owns4(v) {
				r.v4 = append(r.v4, v)
			}
			continue
		}
		if v := a.As16(); !r.owns16(v) {
			r.v6 = append(r.v6, v)
		}
	}
	return r
}

// MAC returns the link-layer address the Responder answers with.
func (r *Responder) MAC() MAC { return r.mac }

// Owns reports whether ip is one of the responder's addresses. An
// IPv4-mapped IPv6 address matches its IPv4 address; zones are ignored.
// It does not allocate.
func (r *Responder) Owns(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return r.owns4(ip.As4())
	case ip.Is6():
		return r.owns16(ip.As16())
	}
	return false
}

func (r *Responder) owns4(a [4]byte) bool {
	for _, v := range r.v4 {
		if v == a {
			return true
		}
	}
	return false
}

func (r *Responder) owns16(a [16]byte) bool {
	for _, v := range r.v6 {
		if v == a {
			return true
		}
	}
	return false
}

// Result says what Handle did with a frame.
type Result uint8

const (
	// Replied: the buffer now holds the reply frame (length returned).
	Replied Result = iota
	// NotForUs: a valid request for an address we do not own, a frame
	// addressed to another unicast MAC, a gratuitous ARP, or an ARP reply /
	// Neighbour Advertisement (nothing to do).
	NotForUs
	// Malformed: too short, bad hardware/protocol type or lengths, bad
	// ICMPv6 checksum, hop limit != 255 for NDP, an invalid option, a
	// multicast requester, no room for the reply, bad off/end, ...
	Malformed
	// NotNeigh: neither ARP nor ICMPv6 neighbour discovery.
	NotNeigh

	// NumResults is the number of Result values, for counter arrays indexed
	// by Result.
	NumResults = int(NotNeigh) + 1
)

var resultNames = [NumResults]string{"replied", "not_for_us", "malformed", "not_neigh"}

// String returns the metric label of r: "replied", "not_for_us",
// "malformed" or "not_neigh" ("unknown" for other values).
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Handle inspects the Ethernet frame b[off:end]. If it is an ARP request or an
// IPv6 Neighbour Solicitation for one of our addresses, Handle rewrites it in
// place into the ARP reply or Neighbour Advertisement and returns
// (Replied, n): the caller sends b[off:off+n] back to the peer. The reply may
// be longer than the request (an NA is always 86 bytes), so it needs
// len(b)-off >= n; MaxReplyLen bytes in b[off:] always suffice. Otherwise
// Handle returns the reason it did not answer and n == 0, and b is left
// unchanged. Handle never writes outside b[off:off+n], never allocates and
// never panics, whatever b, off and end are.
//
// ARP requests (RFC 826; htype 1, ptype 0x0800, hlen 6, plen 4, op 1) are
// answered when the target IP is ours. The reply has Ethernet dst = the
// sender hardware address, src = our MAC, op 2, sender = (our MAC, target IP),
// target = (requester MAC, requester IP). It is 42 bytes; when b[off:] has
// room for 60 it is zero-padded to the Ethernet minimum of 60, as a NIC would
// (a VXLAN inner frame need not be padded, but some peers and captures expect
// it). ARP probes (sender IP 0.0.0.0, RFC 5227) are answered; gratuitous ARP
// (sender IP == target IP) is NotForUs.
//
// Neighbour Solicitations are validated as RFC 4861 §7.1.1 asks (hop limit
// 255, code 0, length >= 24, valid ICMPv6 checksum, target not multicast,
// options of non-zero length, and for a DAD probe from :: a solicited-node
// destination and no Source Link-Layer Address option) and answered when the
// target is ours (§7.2.4). The advertisement goes from the target address to
// the solicitation's source, with the Solicited and Override flags and a
// Target Link-Layer Address option carrying our MAC; its Ethernet dst is the
// Source Link-Layer Address option if present, else the Ethernet source. A
// DAD probe (source ::) is answered to ff02::1 (Ethernet 33:33:00:00:00:01)
// with the Solicited flag clear. The IPv6 header must be followed directly by
// ICMPv6 (next header 58); NDP behind extension headers is NotNeigh.
//
// A request whose Ethernet destination is another unicast MAC is NotForUs;
// broadcast, multicast and our MAC are accepted.
func (r *Responder) Handle(b []byte, off, end int) (res Result, n int) {
	if off < 0 || end > len(b) || off > end {
		return Malformed, 0
	}
	buf := b[off:]
	flen := end - off
	if flen < ethHdrLen {
		return Malformed, 0
	}
	switch binary.BigEndian.Uint16(buf[12:14]) {
	case etherTypeARP:
		return r.handleARP(buf, flen)
	case etherTypeIPv6:
		return r.handleNDP(buf, flen)
	}
	return NotNeigh, 0
}

// acceptsEthDst reports whether a frame sent to Ethernet address d is for
// this host: broadcast or multicast (group bit set), or our own MAC.
func (r *Responder) acceptsEthDst(d []byte) bool {
	return isGroup(d) || MAC(d[:6]) == r.mac
}

// isGroup reports whether the Ethernet address a (len >= 1) is multicast or
// broadcast.
func isGroup(a []byte) bool { return a[0]&1 != 0 }
