package device

// Splitting what a TUN device with IFF_VNET_HDR hands over: a virtio
// header, then one packet, which may be a TSO/USO super-packet of up to
// 64 KiB (the kernel's TCP stack sends that much at once when the device
// offers segmentation). tunneld cuts it into MTU-sized segments itself,
// each with its own fixed-up IP and TCP/UDP headers and checksum, as the
// NIC would have.
//
// wireguard-go's tun.Read does the same; this one is ours because the
// checksum is the cost: wireguard-go's 8-bytes-per-step sum was 16% of the
// sending tunneld's CPU at 5 Gbit/s, encap.Sum (64-bit adds with carry,
// 22 GB/s) a fraction of that.

import (
	"encoding/binary"
	"errors"

	"tunnelplane/encap"
)

// virtio_net_hdr gso_type values beside VirtioGSOTCPv4/v6 (tcpgro.go).
const (
	VirtioGSONone   = 0
	VirtioGSOUDPL4  = 5
	VirtioGSOECN    = 0x80
	tcpFlagFIN      = 0x01
	tcpFlagCWR      = 0x80
	maxSplitHeaders = 60 + 60 // IPv4 with options + TCP with options
)

// ErrBadSuper: the device handed over a virtio header and packet that do
// not agree (counted as bad_inner, never fatal).
var ErrBadSuper = errors.New("malformed offload packet from the device")

// ErrTooManySegments: a super-packet has more segments than buffers left.
var ErrTooManySegments = errors.New("super-packet has more segments than buffers")

// VirtioHdr is struct virtio_net_hdr (little-endian, the TUN default):
// what a queue opened with IFF_VNET_HDR puts in front of every packet.
type VirtioHdr struct {
	Flags, GSOType                         uint8
	HdrLen, GSOSize, CsumStart, CsumOffset int
}

// ParseVirtioHdr reads the VirtioHdrLen bytes at b.
func ParseVirtioHdr(b []byte) VirtioHdr {
	return VirtioHdr{Flags: b[0], GSOType: b[1],
		HdrLen:     int(binary.LittleEndian.Uint16(b[2:])),
		GSOSize:    int(binary.LittleEndian.Uint16(b[4:])),
		CsumStart:  int(binary.LittleEndian.Uint16(b[6:])),
		CsumOffset: int(binary.LittleEndian.Uint16(b[8:]))}
}

// SplitSuper writes the packet in (after its virtio header h) into
// bufs[i][offset:], one segment each, and returns the number of packets
// and their sizes. l2 is the length of the link-layer header in front of
// the IP header: 0 for TUN, 14 for TAP (whose offsets count from the
// Ethernet header, and whose Ethernet header every segment repeats).
func SplitSuper(in []byte, h VirtioHdr, l2 int, bufs [][]byte, sizes []int, offset int) (int, error) {
	gso := h.GSOType &^ VirtioGSOECN
	if gso == VirtioGSONone {
		if h.Flags&VirtioNeedsCsum != 0 {
			// CHECKSUM_PARTIAL: the field holds the pseudo-header sum;
			// add the rest from csumStart on.
			at := h.CsumStart + h.CsumOffset
			if h.CsumStart >= len(in) || at+2 > len(in) {
				return 0, ErrBadSuper
			}
			binary.BigEndian.PutUint16(in[at:], ^encap.Fold(encap.Sum(in[h.CsumStart:], 0)))
		}
		if len(in) > len(bufs[0])-offset {
			return 0, ErrBadSuper
		}
		sizes[0] = copy(bufs[0][offset:], in)
		return 1, nil
	}
	if len(in) < l2+20 {
		return 0, ErrBadSuper
	}
	ip := in[l2:]
	v6 := ip[0]>>4 == 6
	iphl := h.CsumStart - l2 // the transport header starts where the checksum does
	switch {
	case ip[0]>>4 == 4 && (gso == VirtioGSOTCPv4 || gso == VirtioGSOUDPL4):
		if iphl < 20 || iphl != int(ip[0]&0xf)*4 {
			return 0, ErrBadSuper
		}
	case v6 && (gso == VirtioGSOTCPv6 || gso == VirtioGSOUDPL4):
		if iphl < 40 {
			return 0, ErrBadSuper
		}
	default:
		return 0, ErrBadSuper
	}
	udp := gso == VirtioGSOUDPL4
	// The kernel's hdr_len can cover the whole first packet on the forward
	// path; the transport header says where the payload starts.
	hl := iphl + 8 // IP and transport headers
	if !udp {
		if len(ip) < iphl+20 {
			return 0, ErrBadSuper
		}
		hl = iphl + int(ip[iphl+12]>>4)*4
		if hl < iphl+20 {
			return 0, ErrBadSuper
		}
	}
	if hl > len(ip) || hl > maxSplitHeaders || h.GSOSize <= 0 {
		return 0, ErrBadSuper
	}
	payload := ip[hl:]
	n := (len(payload) + h.GSOSize - 1) / h.GSOSize
	if n == 0 {
		n = 1
	}
	if n > len(bufs) {
		return 0, ErrTooManySegments
	}
	if l2+hl+min(h.GSOSize, len(payload)) > len(bufs[0])-offset {
		return 0, ErrBadSuper
	}
	var src, dst [16]byte
	addrLen := 4
	if v6 {
		copy(src[:], ip[8:24])
		copy(dst[:], ip[24:40])
		addrLen = 16
	} else {
		copy(src[:], ip[12:16])
		copy(dst[:], ip[16:20])
	}
	proto := uint64(encap.ProtoTCP)
	if udp {
		proto = encap.ProtoUDP
	}
	// Everything in the pseudo-header but the length is the same for all.
	pseudo := encap.Sum(src[:addrLen], encap.Sum(dst[:addrLen], proto))
	id := binary.BigEndian.Uint16(ip[4:])
	// The IPv4 header differs between segments only in total length, ID
	// and checksum: sum the rest once (rereading each segment's header
	// right after writing its fields was 6% of the sending tunneld).
	var ipSum uint64
	if !v6 {
		var h [60]byte
		copy(h[:], ip[:iphl])
		h[2], h[3], h[4], h[5], h[10], h[11] = 0, 0, 0, 0, 0, 0
		ipSum = encap.Sum(h[:iphl], 0)
	}
	var seq uint32
	var flags uint8
	if !udp {
		seq = binary.BigEndian.Uint32(ip[iphl+4:])
		flags = ip[iphl+13]
	}
	for i := range n {
		chunk := payload[i*h.GSOSize : min((i+1)*h.GSOSize, len(payload))]
		b := bufs[i][offset:]
		copy(b, in[:l2+hl])
		copy(b[l2+hl:], chunk)
		sizes[i] = l2 + hl + len(chunk)
		b = b[l2:sizes[i]] // the IP packet
		total := len(b)
		if v6 {
			binary.BigEndian.PutUint16(b[4:], uint16(total-40))
		} else {
			segID := id + uint16(i)
			binary.BigEndian.PutUint16(b[2:], uint16(total))
			binary.BigEndian.PutUint16(b[4:], segID)
			binary.BigEndian.PutUint16(b[10:], ^encap.Fold(ipSum+uint64(total)+uint64(segID)))
		}
		t := b[iphl:]
		l4len := total - iphl
		var csumAt int
		if udp {
			binary.BigEndian.PutUint16(t[4:], uint16(l4len))
			csumAt = 6
		} else {
			binary.BigEndian.PutUint32(t[4:], seq+uint32(i*h.GSOSize))
			f := flags
			if i > 0 {
				f &^= tcpFlagCWR // CWR goes out once, on the first segment
			}
			if i < n-1 {
				f &^= tcpFlagFIN | tcpFlagPSH // only the last ends or pushes
			}
			t[13] = f
			csumAt = 16
		}
		t[csumAt], t[csumAt+1] = 0, 0
		c := ^encap.Fold(encap.Sum(t, pseudo+uint64(l4len)))
		if udp && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(t[csumAt:], c)
	}
	return n, nil
}
