package underlay

// The UDP-tunnel GSO TAP: a send path beside the sockets for whole TSO
// super-packets (issue 15, lead 1; the probe in bench/probe/udptunnelgso
// has the evidence). Linux 6.17 taught the tun driver a 24-byte virtio
// header (struct virtio_net_hdr_v1_hash_tunnel) whose gso_type may say
// "TCP segments inside a UDP tunnel": one write of an outer
// Ethernet+IPv4+UDP+VXLAN frame holding a 64 KB inner TCP super-packet
// becomes one skb that the kernel segments where it leaves (the NIC, or
// software GSO on the way out of a veth with offloads off), or carries
// whole where the next hop takes it so (a veth with offloads on). The
// sockets cannot do this: UDP_SEGMENT cuts the payload into equal UDP
// datagrams, so each inner segment needs its own headers and checksum,
// made in user space (device.SplitSuper).
//
// The TAP's frames enter the underlay namespace on the TAP's ingress,
// where a tc redirect (netcfg.RedirectTAP) sends them out of the underlay
// device as they are: tunneld writes every header, the outer Ethernet
// addresses too, and the kernel's IP output (routing policy, netfilter,
// the socket's options) is not on the way.
//
// x/sys has none of these constants yet; each is named with its header.

import (
	"encoding/binary"
	"net/netip"

	"tunnelplane/encap"
)

const (
	// TunnelVnetHdrLen is sizeof(struct virtio_net_hdr_v1_hash_tunnel)
	// (include/uapi/linux/virtio_net.h): the TAP's TUNSETVNETHDRSZ.
	TunnelVnetHdrLen = 24
	// TunnelFrameOverhead is what PutTunnelFrame writes in front of the
	// UDP payload: the virtio header, Ethernet, IPv4 and UDP.
	TunnelFrameOverhead = TunnelVnetHdrLen + encap.EthernetLen + encap.IPv4Len + encap.UDPLen

	tunFUDPTunnelGSO = 0x080 // TUN_F_UDP_TUNNEL_GSO, include/uapi/linux/if_tun.h

	vnetNeedsCsum        = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSOUDPTunnelIPv4 = 0x20 // VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4, include/uapi/linux/virtio_net.h
)

// TunnelFrame is what one frame's outer headers say beyond its payload.
type TunnelFrame struct {
	DstMAC, SrcMAC   [6]byte
	Src, Dst         netip.Addr // IPv4
	SrcPort, DstPort uint16
	TTL, TOS         uint8
	DF               bool
	ID               uint16 // the first segment's IP id; the kernel counts up per segment
}

// TunnelGSO describes the inner super-packet, with offsets into the
// frame's buffer: where its IP header starts, where its TCP header starts
// and ends; GSOType is the device's virtio gso_type (TCPv4 or TCPv6, with
// the ECN bit as the device gave it) and GSOSize its segment payload.
type TunnelGSO struct {
	InnerIP, InnerL4, InnerPayload int
	GSOType                        uint8
	GSOSize                        uint16
}

// PutTunnelFrame writes, in front of the UDP payload b[off:end] (from the
// VXLAN header on), the virtio header, Ethernet, IPv4 and UDP headers of
// one UDP-tunnel GSO frame, and returns where the frame (its virtio
// header) starts. The caller guarantees off >= TunnelFrameOverhead, an
// IPv4 f.Src and f.Dst, and end-off small enough for the outer IPv4
// length (MaxTunnelPayload).
//
// The inner TCP checksum stays as the device handed it: partial (the
// pseudo-header sum), which NEEDS_CSUM at csum_start tells the kernel to
// complete per segment. The outer UDP checksum is 0, as the kernel's own
// VXLAN sends over IPv4 by default.
func PutTunnelFrame(b []byte, off, end int, f *TunnelFrame, g *TunnelGSO) int {
	udp := encap.PushUDP(b, off, end, f.SrcPort, f.DstPort)
	ip := encap.PushIPv4(b, udp, end, &encap.IPv4Header{
		Src: f.Src, Dst: f.Dst, Protocol: encap.ProtoUDP, TTL: f.TTL, TOS: f.TOS, ID: f.ID, DF: f.DF})
	eth := encap.PushEthernet(b, ip, f.DstMAC, f.SrcMAC, encap.EtherTypeIPv4)
	start := eth - TunnelVnetHdrLen
	h := b[start:eth:eth]
	clear(h)
	h[0] = vnetNeedsCsum
	h[1] = g.GSOType | vnetGSOUDPTunnelIPv4
	// The generic fields are __virtio16: little endian for a tun queue
	// without TUNSETVNETBE; the two tunnel offsets are __le16 always.
	binary.LittleEndian.PutUint16(h[2:], uint16(g.InnerPayload-eth)) // hdr_len
	binary.LittleEndian.PutUint16(h[4:], g.GSOSize)
	binary.LittleEndian.PutUint16(h[6:], uint16(g.InnerL4-eth))  // csum_start
	binary.LittleEndian.PutUint16(h[8:], 16)                     // csum_offset: the TCP checksum
	binary.LittleEndian.PutUint16(h[20:], uint16(udp-eth))       // outer_th_offset
	binary.LittleEndian.PutUint16(h[22:], uint16(g.InnerIP-eth)) // inner_nh_offset
	return start
}

// MaxTunnelPayload is the longest UDP payload a frame can carry: the
// outer IPv4 total length is 16 bits.
const MaxTunnelPayload = 0xffff - encap.IPv4Len - encap.UDPLen
