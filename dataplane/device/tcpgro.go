package device

// TCP coalescing for a TUN device opened with IFF_VNET_HDR (offload: auto).
//
// The receive side hands the device runs of TCP segments of one flow: the
// kernel's UDP GRO gives tunneld up to 64 KiB of back-to-back VXLAN
// datagrams in one read, and one TCP stream fills them. Written one by one,
// every segment is a trip through the TUN driver and the inner TCP stack.
// Written as one virtio super-packet (gso_type TCPV4/TCPV6, NEEDS_CSUM),
// the stack takes them as one GRO'd packet, as the kernel's own vxlan
// device hands them over after GRO.
//
// wireguard-go's tun.Write does the same with a flow table, but it copies
// every segment's payload behind the first and checksums it again; on the
// receiving tunneld that was a fifth of its CPU. This coalescer takes only
// runs of segments that are adjacent in the batch and writes them with
// writev: the virtio header, the first segment whole (its IP and TCP
// headers rewritten for the run), then the other segments' payloads where
// they lie, no byte copied. Each segment's TCP checksum is verified first
// (a read pass): the kernel will not check a NEEDS_CSUM packet's payload,
// and a tunnel should not launder corrupted segments into good ones.
//
// A segment joins the run when it could have been cut from it by TSO:
// same addresses, ports, IP TOS/TTL/DF (IPv6: traffic class, flow label,
// hop limit), same ACK number, window and TCP options bytes, flags ACK
// (PSH allowed on the last), sequence number right after the run, and a
// payload as long as the first segment's (the last may be shorter). IPv4
// with options, fragments, other flags and runs over 64 KiB stay single.

import (
	"bytes"
	"encoding/binary"

	"tunnelplane/encap"
)

const (
	VirtioHdrLen        = 10 // struct virtio_net_hdr, the TUN default
	VirtioNeedsCsum     = 1
	VirtioGSOTCPv4      = 1
	VirtioGSOTCPv6      = 4
	tcpFlagACK          = 0x10
	tcpFlagPSH          = 0x08
	maxCoalesceSegments = 64
	maxCoalesceBytes    = 65535
)

// tcpSeg is what coalescing needs to know of one inner packet: a TCP
// segment, or (udp) a UDP datagram.
type tcpSeg struct {
	iphl  int // IP header length
	hl    int // IP + TCP/UDP header length
	pay   int // TCP/UDP payload length
	seq   uint32
	flags uint8
	v6    bool
	udp   bool
	ok    bool // a segment that may be coalesced
	// partial: the checksum field holds only the pseudo-header sum (a
	// kernel peer's checksum offload, see partial.go); the device is
	// told NEEDS_CSUM instead of being given a packet it would reject.
	partial bool
}

// parseSeg looks at the inner IP packet p (already checked by decap:
// version, header length and total length agree with len(p)) for a TCP
// segment or a UDP datagram (hl > 0 then). UDP may be coalesced (ok) only
// when the device accepts UDP segmentation offload (uso: TUN_F_USO4/6,
// Linux 6.2 and later): runs of one UDP flow's equal-sized datagrams then
// go to the device as one USO super-packet, as wireguard-go's tun.Write
// does.
func parseSeg(p []byte, uso bool) tcpSeg {
	var s tcpSeg
	if len(p) < 28 {
		return s
	}
	var proto byte
	switch p[0] >> 4 {
	case 4:
		if p[0] != 0x45 || binary.BigEndian.Uint16(p[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			return s
		}
		s.iphl, proto = 20, p[9]
	case 6:
		if len(p) < 48 || int(binary.BigEndian.Uint16(p[4:]))+40 != len(p) {
			return s
		}
		s.iphl, s.v6, proto = 40, true, p[6]
	default:
		return s
	}
	if proto == encap.ProtoUDP {
		if int(binary.BigEndian.Uint16(p[s.iphl+4:])) != len(p)-s.iphl {
			return s
		}
		s.udp, s.hl = true, s.iphl+8
		s.pay = len(p) - s.hl
		s.ok = s.pay > 0 && uso
		return s
	}
	if proto != encap.ProtoTCP || len(p) < s.iphl+20 {
		return s
	}
	t := p[s.iphl:]
	thl := int(t[12]>>4) * 4
	if thl < 20 || thl > len(t) {
		return s
	}
	s.hl = s.iphl + thl
	s.pay = len(p) - s.hl
	s.seq = binary.BigEndian.Uint32(t[4:])
	s.flags = t[13]
	s.ok = s.pay > 0 && (s.flags == tcpFlagACK || s.flags == tcpFlagACK|tcpFlagPSH)
	return s
}

// sameFlow reports whether b's headers match a's in everything TSO would
// have copied unchanged from one segment to the next.
func sameFlow(a, b []byte, sa, sb *tcpSeg) bool {
	if sa.v6 != sb.v6 || sa.hl != sb.hl || sa.udp != sb.udp {
		return false
	}
	if sa.v6 {
		if !bytes.Equal(a[:4], b[:4]) || a[7] != b[7] || !bytes.Equal(a[8:40], b[8:40]) {
			return false
		}
	} else if a[1] != b[1] || a[6]&0x40 != b[6]&0x40 || a[8] != b[8] || !bytes.Equal(a[12:20], b[12:20]) {
		return false
	}
	ta, tb := a[sa.iphl:sa.hl], b[sb.iphl:sb.hl]
	if sa.udp {
		return bytes.Equal(ta[:4], tb[:4]) // ports
	}
	// Ports; acknowledgment number and data offset; window and (below)
	// options. The urgent pointer is meaningless without URG, which a
	// candidate never has.
	return bytes.Equal(ta[:4], tb[:4]) && bytes.Equal(ta[8:13], tb[8:13]) &&
		bytes.Equal(ta[14:16], tb[14:16]) && bytes.Equal(ta[20:], tb[20:])
}

// tcpChecksumOK verifies the TCP (or UDP) checksum of the segment p. A
// UDP datagram over IPv4 may carry none (0).
func tcpChecksumOK(p []byte, s *tcpSeg) bool {
	if s.udp && !s.v6 && p[s.iphl+6] == 0 && p[s.iphl+7] == 0 {
		return true
	}
	return encap.Fold(encap.Sum(p[s.iphl:], pseudoSum(p, s, len(p)-s.iphl))) == 0xffff
}

// pseudoSum is the TCP (UDP) pseudo-header accumulator of p's addresses
// for a TCP (UDP) length of n. The addresses lie side by side in the IP
// header, so one Sum over them is the address part (and avoids building
// two netip.Addrs per packet on the receive path).
func pseudoSum(p []byte, s *tcpSeg, n int) uint64 {
	proto := uint64(encap.ProtoTCP)
	if s.udp {
		proto = encap.ProtoUDP
	}
	if s.v6 {
		return encap.Sum(p[8:40], proto+uint64(n))
	}
	return encap.Sum(p[12:20], proto+uint64(n))
}

// coalesceRuns splits pkts into runs to write as one packet each: it
// fills segs (one per packet) and returns the end index of every run in
// ends. A run of several is always segments of one flow that passed
// sameFlow and their checksums: TCP in sequence, or (uso) UDP datagrams of
// one size but the last. Each packet starts with l2 bytes of
// link-layer header (TAP: 14), which must be equal within a run.
//
// A packet longer than mtu (the device's, without l2) is never part of a
// run: it is a super-packet already (partial.go).
func coalesceRuns(pkts [][]byte, segs []tcpSeg, ends []int, l2, mtu int, uso bool) []int {
	ends = ends[:0]
	for i := range pkts {
		segs[i] = tcpSeg{}
		if len(pkts[i]) > l2 {
			segs[i] = parseSeg(pkts[i][l2:], uso)
			if len(pkts[i])-l2 > mtu {
				segs[i].ok = false
			}
		}
	}
	for i := 0; i < len(pkts); {
		j := i + 1
		h := &segs[i]
		if h.ok && (h.udp || h.flags == tcpFlagACK) {
			verified := false
			next, total := h.seq+uint32(h.pay), h.hl+h.pay
			for j < len(pkts) && j-i < maxCoalesceSegments {
				s := &segs[j]
				if !s.ok || (!h.udp && s.seq != next) || s.pay > h.pay || total+s.pay > maxCoalesceBytes ||
					!bytes.Equal(pkts[i][:l2], pkts[j][:l2]) || !sameFlow(pkts[i][l2:], pkts[j][l2:], h, s) {
					break
				}
				if !verified {
					if !checksumUsable(pkts[i][l2:], h) {
						h.ok = false
						break
					}
					verified = true
				}
				if !checksumUsable(pkts[j][l2:], s) {
					s.ok = false // written alone; the kernel drops it and counts TCP InCsumErrors
					break
				}
				next += uint32(s.pay)
				total += s.pay
				j++
				if s.pay < h.pay || (!h.udp && s.flags != tcpFlagACK) {
					break // a short segment or PSH ends what TSO would have cut
				}
			}
		}
		if j == i+1 && h.hl > 0 && !h.partial {
			// Written alone: a partial checksum needs NEEDS_CSUM
			// (partial.go).
			checksumPartial(pkts[i][l2:], h)
		}
		ends = append(ends, j)
		i = j
	}
	return ends
}

// superHeader rewrites the headers of head, the first IP packet of a run
// of segments carrying pay payload bytes in all (psh: the last had PSH),
// into those of the super-packet, and fills the virtio header vh for
// segments of gsoSize payload bytes, whose offsets count l2 bytes of
// link-layer header in front of head.
func superHeader(head []byte, h *tcpSeg, pay, gsoSize int, psh bool, l2 int, vh *[VirtioHdrLen]byte) {
	l4Len := h.hl - h.iphl + pay
	if h.v6 {
		binary.BigEndian.PutUint16(head[4:], uint16(l4Len))
		vh[1] = VirtioGSOTCPv6
	} else {
		binary.BigEndian.PutUint16(head[2:], uint16(h.hl+pay))
		head[10], head[11] = 0, 0
		binary.BigEndian.PutUint16(head[10:], encap.IPv4Checksum(head[:20]))
		vh[1] = VirtioGSOTCPv4
	}
	t := head[h.iphl:]
	csumAt := 16 // the TCP checksum
	if h.udp {
		binary.BigEndian.PutUint16(t[4:], uint16(l4Len))
		vh[1], csumAt = VirtioGSOUDPL4, 6
	} else if psh {
		t[13] |= tcpFlagPSH
	}
	// NEEDS_CSUM: the checksum field holds the pseudo-header sum over the
	// whole length, and the kernel adds the rest from csum_start
	// (CHECKSUM_PARTIAL), or adjusts it per segment when it segments.
	binary.BigEndian.PutUint16(t[csumAt:], encap.Fold(pseudoSum(head, h, l4Len)))
	vh[0] = VirtioNeedsCsum
	binary.LittleEndian.PutUint16(vh[2:], uint16(l2+h.hl))   // hdr_len
	binary.LittleEndian.PutUint16(vh[4:], uint16(gsoSize))   // gso_size
	binary.LittleEndian.PutUint16(vh[6:], uint16(l2+h.iphl)) // csum_start
	binary.LittleEndian.PutUint16(vh[8:], uint16(csumAt))    // csum_offset
}
