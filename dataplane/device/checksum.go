package device

// Partial checksums and super-packets from a peer, as the device takes
// them. The policy (what counts as partial, why the test is safe, which
// super-packets the device gets) is drawn at the top of the data plane's
// partial.go; these are its packet-level pieces.

import (
	"encoding/binary"

	"tunnelplane/encap"
)

// checksumAt is the offset of the checksum field in s's transport header.
func checksumAt(s *tcpSeg) int {
	if s.udp {
		return 6
	}
	return 16
}

// checksumPartial reports whether the TCP/UDP packet p (parsed as s, hl >
// 0) carries a partial checksum: exactly the folded pseudo-header sum. It
// sets s.partial.
func checksumPartial(p []byte, s *tcpSeg) bool {
	at := s.iphl + checksumAt(s)
	s.partial = binary.BigEndian.Uint16(p[at:]) == encap.Fold(pseudoSum(p, s, len(p)-s.iphl))
	return s.partial
}

// checksumUsable reports whether the segment p may go to the device in a
// NEEDS_CSUM super-packet: its checksum verifies, or it is partial.
func checksumUsable(p []byte, s *tcpSeg) bool {
	return tcpChecksumOK(p, s) || checksumPartial(p, s)
}

// CompletePartial completes the checksum of the IP packet ip when it is
// a TCP or UDP packet whose checksum is partial, and reports whether it
// was. It is the plain device's per-packet test (no virtio header to say
// NEEDS_CSUM), so it reads only what it must: no full parse.
func CompletePartial(ip []byte) bool {
	if len(ip) < 28 {
		return false
	}
	var iphl int
	var proto byte
	var addrs []byte
	switch ip[0] >> 4 {
	case 4:
		if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return false // a later fragment: no transport header
		}
		iphl, proto, addrs = int(ip[0]&0xf)*4, ip[9], ip[12:20]
	case 6:
		if len(ip) < 48 {
			return false
		}
		iphl, proto, addrs = 40, ip[6], ip[8:40]
	default:
		return false
	}
	at := iphl + 16
	switch proto {
	case encap.ProtoTCP:
	case encap.ProtoUDP:
		at = iphl + 6
	default:
		return false
	}
	if iphl < 20 || at+2 > len(ip) {
		return false
	}
	l4 := len(ip) - iphl
	if binary.BigEndian.Uint16(ip[at:]) != encap.Fold(encap.Sum(addrs, uint64(proto)+uint64(l4))) {
		return false
	}
	c := ^encap.Fold(encap.Sum(ip[iphl:], 0))
	if proto == encap.ProtoUDP && c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(ip[at:], c)
	return true
}

// partialHeader fills vh for a single packet whose checksum is partial:
// no GSO, the kernel completes the checksum (or trusts it on local
// delivery, as it trusts the same packet from a veth).
func partialHeader(s *tcpSeg, l2 int, vh *[VirtioHdrLen]byte) {
	*vh = [VirtioHdrLen]byte{}
	vh[0] = VirtioNeedsCsum
	binary.LittleEndian.PutUint16(vh[2:], uint16(l2+s.hl))       // hdr_len
	binary.LittleEndian.PutUint16(vh[6:], uint16(l2+s.iphl))     // csum_start
	binary.LittleEndian.PutUint16(vh[8:], uint16(checksumAt(s))) // csum_offset
}

// Super is an inner packet longer than the device MTU, received from a
// peer, as ParseSuper found it.
type Super struct {
	seg  tcpSeg
	l2   int
	size int
}

// SuperVerdict is what ParseSuper decided about a long inner packet.
type SuperVerdict uint8

const (
	// SuperSegments: a TCP or UDP super-packet with a usable (now partial)
	// checksum, to be written with GSO or split into Segments.
	SuperSegments SuperVerdict = iota
	// SuperDatagram: one big UDP datagram without a segment size; it goes
	// to the device whole, as the kernel's own vxlan passes it.
	SuperDatagram
	// SuperNotSegmented: no TCP/UDP payload; nothing can have cut it from
	// a segmentation offload (the data plane's inner_oversize).
	SuperNotSegmented
	// SuperBadChecksum: the checksum is neither partial nor correct.
	SuperBadChecksum
	// SuperBadSize: no segment size the virtio header can carry.
	SuperBadSize
)

// ParseSuper looks at the IP packet ip (l2 bytes into its frame: 0 for
// TUN, 14 for TAP) longer than the device MTU mtu. gso is the segment size
// the kernel reported for the datagram it came in (UDP_GRO of a
// UDP-tunnel GSO packet), or 0.
//
//   - TCP is a super-packet whatever its source: cutting a stream anywhere
//     is what TSO does; segments of gso, at most what the MTU carries.
//   - UDP is one only with gso: datagram boundaries belong to the
//     application, and only the sender's gso_size says where they are.
//
// With SuperSegments, a complete checksum has been verified and made
// partial, which both the GSO write and Split expect.
func ParseSuper(ip []byte, l2, mtu, gso int) (Super, SuperVerdict) {
	s := Super{seg: parseSeg(ip, false), l2: l2}
	if s.seg.hl == 0 || s.seg.pay == 0 {
		return s, SuperNotSegmented
	}
	if s.seg.udp && gso == 0 {
		return s, SuperDatagram
	}
	if !checksumPartial(ip, &s.seg) {
		// A super-packet whose checksum is complete (nothing sends one,
		// but nothing forbids it): verified, then made partial.
		if !tcpChecksumOK(ip, &s.seg) {
			return s, SuperBadChecksum
		}
		binary.BigEndian.PutUint16(ip[s.seg.iphl+checksumAt(&s.seg):], encap.Fold(pseudoSum(ip, &s.seg, len(ip)-s.seg.iphl)))
	}
	s.size = mtu - s.seg.hl
	if s.seg.udp || (gso > 0 && gso < s.size) {
		s.size = gso
	}
	if s.size <= 0 || s.size > 0xffff {
		return s, SuperBadSize
	}
	return s, SuperSegments
}

// UDP reports whether the super-packet's segments are UDP datagrams
// (USO) rather than TCP segments (TSO).
func (s *Super) UDP() bool { return s.seg.udp }

// Size is the payload bytes per segment.
func (s *Super) Size() int { return s.size }

// Segments is the number of packets Split makes.
func (s *Super) Segments() int { return (s.seg.pay + s.size - 1) / s.size }

// Split cuts the super-packet, whose whole frame is frame, into
// bufs[i][offset:] as SplitSuper does, for a device that takes no GSO.
func (s *Super) Split(frame []byte, bufs [][]byte, sizes []int, offset int) (int, error) {
	h := VirtioHdr{Flags: VirtioNeedsCsum, GSOSize: s.size, CsumStart: s.l2 + s.seg.iphl, CsumOffset: checksumAt(&s.seg)}
	switch {
	case s.seg.udp:
		h.GSOType = VirtioGSOUDPL4
	case s.seg.v6:
		h.GSOType = VirtioGSOTCPv6
	default:
		h.GSOType = VirtioGSOTCPv4
	}
	return SplitSuper(frame, h, s.l2, bufs, sizes, offset)
}
