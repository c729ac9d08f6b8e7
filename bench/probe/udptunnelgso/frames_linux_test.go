//go:build linux

package udptunnelgso

import (
	"encoding/binary"
	"net"
)

// Constants golang.org/x/sys/unix does not have (v0.49.0). Values from the
// kernel headers named on each block.
const (
	// include/uapi/linux/if_tun.h (TUNSETOFFLOAD flags).
	tunFCSUM             = 0x01
	tunFTSO4             = 0x02
	tunFTSO6             = 0x04
	tunFUDPTunnelGSO     = 0x080 // TUN_F_UDP_TUNNEL_GSO: TSO/USO for UDP-tunnelled packets
	tunFUDPTunnelGSOCsum = 0x100 // TUN_F_UDP_TUNNEL_GSO_CSUM: same, outer UDP checksum offloaded too

	// include/uapi/linux/virtio_net.h (struct virtio_net_hdr_v1 flags and gso_type).
	vnetHdrFNeedsCsum     = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetHdrFUDPTunnelCsum = 8    // VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM
	vnetGSOTCPv4          = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOUDPTunnelIPv4  = 0x20 // VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
	vnetGSOUDPTunnelIPv6  = 0x40 // VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6

	// sizeof(struct virtio_net_hdr_v1_hash_tunnel), include/uapi/linux/virtio_net.h;
	// drivers/net/tun_vnet.h calls it TUN_VNET_TNL_SIZE and parses the tunnel
	// fields only when TUNSETVNETHDRSZ >= this (tun_vnet_hdr_guest_features).
	vnetHdrTunnelSize = 24
)

// Layout of struct virtio_net_hdr_v1_hash_tunnel (24 bytes; the generic
// fields are __virtio16, little endian on x86 for a legacy tun header, the
// two tunnel offsets are __le16 always):
//
//	0  u8   flags            NEEDS_CSUM (1) | UDP_TUNNEL_CSUM (8)
//	1  u8   gso_type         TCPV4 (1) | UDP_TUNNEL_IPV4 (0x20)
//	2  u16  hdr_len          headers through the inner TCP header
//	4  u16  gso_size         inner MSS
//	6  u16  csum_start       offset of the inner TCP header (the partial csum)
//	8  u16  csum_offset      16 (tcphdr.check)
//	10 u16  num_buffers      0
//	12 u16  hash_value_lo    0
//	14 u16  hash_value_hi    0
//	16 u16  hash_report      0
//	18 u16  padding          0
//	20 le16 outer_th_offset  offset of the outer UDP header (>= ETH_HLEN+20)
//	22 le16 inner_nh_offset  offset of the inner IP header (>= outer_th+8)
type vnetTunnelHdr struct {
	Flags, GSOType                         uint8
	HdrLen, GSOSize, CsumStart, CsumOffset uint16
	OuterTHOffset, InnerNHOffset           uint16
}

func (h vnetTunnelHdr) put(b []byte) {
	clear(b[:vnetHdrTunnelSize])
	b[0], b[1] = h.Flags, h.GSOType
	le := binary.LittleEndian
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[20:], h.OuterTHOffset)
	le.PutUint16(b[22:], h.InnerNHOffset)
}

const (
	ethLen    = 14
	ipLen     = 20
	udpLen    = 8
	vxlanLen  = 8
	tcpLen    = 20
	vxlanPort = 4789
	vni       = 42
	// innerMSS makes 1450-byte inner IP packets (the usual VXLAN overlay
	// MTU), i.e. 1472-byte UDP payloads on a 1500-byte underlay.
	innerMSS = 1410
	// segs per super-packet: 44*1472 = 64768 is the most one UDP_SEGMENT
	// send may carry, so all three send paths move the same bytes.
	segs = 44
)

var (
	ipA      = net.IPv4(10, 99, 0, 1).To4()
	ipB      = net.IPv4(10, 99, 0, 2).To4()
	innerMAC = [2]net.HardwareAddr{{0x02, 0x70, 0x70, 0, 0, 1}, {0x02, 0x70, 0x70, 0, 0, 2}}
)

// csumAdd adds b to a running one's-complement sum.
func csumAdd(sum uint32, b []byte) uint32 {
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)&1 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func pseudo(src, dst net.IP, proto uint8, l4len int) uint32 {
	s := csumAdd(0, src)
	s = csumAdd(s, dst)
	return s + uint32(proto) + uint32(l4len)
}

// payloadByte is the stream pattern: the byte at TCP sequence s.
func payloadByte(s uint32) byte { return byte(s % 251) }

// putIPv4 writes a 20-byte IPv4 header (plus optLen bytes of NOP options)
// with its checksum.
func putIPv4(b []byte, optLen, totLen int, id uint16, proto uint8, src, dst net.IP) int {
	hl := ipLen + optLen
	b[0] = 0x40 | byte(hl/4)
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(totLen))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF
	b[8], b[9] = 64, proto
	b[10], b[11] = 0, 0
	copy(b[12:], src)
	copy(b[16:], dst)
	for i := ipLen; i < hl; i++ {
		b[i] = 1 // NOP
	}
	binary.BigEndian.PutUint16(b[10:], ^csumFold(csumAdd(0, b[:hl])))
	return hl
}

// putInner writes inner Ethernet + IPv4 + TCP + payload for payloadLen bytes
// starting at seq. If partial, the TCP checksum is the folded pseudo-header
// sum (what CHECKSUM_PARTIAL wants), else the full checksum. Returns the
// length written.
func putInner(b []byte, payloadLen int, seq uint32, id uint16, partial bool) int {
	copy(b[0:], innerMAC[1])
	copy(b[6:], innerMAC[0])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[ethLen:]
	putIPv4(ip, 0, ipLen+tcpLen+payloadLen, id, 6, ipA, ipB)
	th := ip[ipLen:]
	binary.BigEndian.PutUint16(th[0:], 40000)
	binary.BigEndian.PutUint16(th[2:], 5201)
	binary.BigEndian.PutUint32(th[4:], seq)
	binary.BigEndian.PutUint32(th[8:], 1)
	th[12] = 5 << 4
	th[13] = 0x18 // PSH|ACK
	binary.BigEndian.PutUint16(th[14:], 65535)
	th[16], th[17], th[18], th[19] = 0, 0, 0, 0
	pl := th[tcpLen : tcpLen+payloadLen]
	for i := range pl {
		pl[i] = payloadByte(seq + uint32(i))
	}
	ps := pseudo(ipA, ipB, 6, tcpLen+payloadLen)
	if partial {
		binary.BigEndian.PutUint16(th[16:], csumFold(ps))
	} else {
		binary.BigEndian.PutUint16(th[16:], ^csumFold(csumAdd(ps, th[:tcpLen+payloadLen])))
	}
	return ethLen + ipLen + tcpLen + payloadLen
}

func putVXLAN(b []byte) {
	b[0], b[1], b[2], b[3] = 0x08, 0, 0, 0
	b[4], b[5], b[6], b[7] = byte(vni>>16), byte(vni>>8), byte(vni), 0
}

// superFrame writes into b: a 24-byte virtio header, then (if eth) an outer
// Ethernet header, an outer IPv4 header with optLen option bytes, UDP to
// 4789 (checksum 0), VXLAN, and the inner TSO super-packet of segs*innerMSS
// payload bytes with a partial TCP checksum. Returns the total length.
func superFrame(b []byte, eth bool, optLen int, src, dst net.HardwareAddr, seq uint32, id uint16) int {
	off := vnetHdrTunnelSize
	outerTH := 0
	if eth {
		copy(b[off:], dst)
		copy(b[off+6:], src)
		binary.BigEndian.PutUint16(b[off+12:], 0x0800)
		outerTH = ethLen
	}
	ipOff := off + outerTH
	payload := segs * innerMSS
	innerLen := ethLen + ipLen + tcpLen + payload
	udpTot := udpLen + vxlanLen + innerLen
	hl := putIPv4(b[ipOff:], optLen, ipLen+optLen+udpTot, id, 17, ipA, ipB)
	outerTH += hl
	u := b[off+outerTH:]
	binary.BigEndian.PutUint16(u[0:], 49152+uint16(seq/65536%1024))
	binary.BigEndian.PutUint16(u[2:], vxlanPort)
	binary.BigEndian.PutUint16(u[4:], uint16(udpTot))
	u[6], u[7] = 0, 0
	putVXLAN(u[udpLen:])
	innerNH := outerTH + udpLen + vxlanLen + ethLen
	putInner(u[udpLen+vxlanLen:], payload, seq, id, true)
	vnetTunnelHdr{
		Flags:         vnetHdrFNeedsCsum,
		GSOType:       vnetGSOTCPv4 | vnetGSOUDPTunnelIPv4,
		HdrLen:        uint16(innerNH + ipLen + tcpLen),
		GSOSize:       innerMSS,
		CsumStart:     uint16(innerNH + ipLen),
		CsumOffset:    16,
		OuterTHOffset: uint16(outerTH),
		InnerNHOffset: uint16(innerNH),
	}.put(b)
	return off + outerTH + udpTot
}

// splitDatagrams is tunneld's software path in miniature: cut an inner TSO
// super-packet (inner Ethernet+IPv4+TCP, as read from a TUN with a vnet
// header) into segs VXLAN payloads of 1472 bytes, copying each segment,
// rewriting IP length/id/checksum and computing each TCP checksum in full.
func splitDatagrams(super []byte, out [][]byte) {
	ip := super[ethLen:]
	th := ip[ipLen:]
	seq0 := binary.BigEndian.Uint32(th[4:])
	id0 := binary.BigEndian.Uint16(ip[4:])
	pl := th[tcpLen:]
	for i := range out {
		d := out[i][:vxlanLen+ethLen+ipLen+tcpLen+innerMSS]
		putVXLAN(d)
		copy(d[vxlanLen:], super[:ethLen+ipLen+tcpLen])
		nip := d[vxlanLen+ethLen:]
		binary.BigEndian.PutUint16(nip[2:], ipLen+tcpLen+innerMSS)
		binary.BigEndian.PutUint16(nip[4:], id0+uint16(i))
		nip[10], nip[11] = 0, 0
		binary.BigEndian.PutUint16(nip[10:], ^csumFold(csumAdd(0, nip[:ipLen])))
		nth := nip[ipLen:]
		binary.BigEndian.PutUint32(nth[4:], seq0+uint32(i*innerMSS))
		copy(nth[tcpLen:], pl[i*innerMSS:(i+1)*innerMSS])
		nth[16], nth[17] = 0, 0
		s := csumAdd(pseudo(ipA, ipB, 6, tcpLen+innerMSS), nth[:tcpLen+innerMSS])
		binary.BigEndian.PutUint16(nth[16:], ^csumFold(s))
		out[i] = d
	}
}
