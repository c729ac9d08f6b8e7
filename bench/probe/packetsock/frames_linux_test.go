//go:build linux

package packetsock

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// One IPIP packet as the probe sends it: outer IPv4 (proto 4, 1400 bytes in
// all) around an inner IPv4/TCP packet with 1340 payload bytes, i.e. what
// tunneld sends for one full-sized inner TCP segment. On the AF_PACKET paths
// an Ethernet header comes first (1414-byte frame).
const (
	ethLen     = 14
	ipLen      = 20
	tcpLen     = 20
	outerLen   = 1400                      // outer IPv4 total length
	innerLen   = outerLen - ipLen          // what the raw socket is given
	payloadLen = innerLen - ipLen - tcpLen // 1340
	headLen    = ethLen + ipLen            // what the packet-socket paths prepend
	frameLen   = ethLen + outerLen         // 1414
	batch      = 64                        // tunneld's sendmmsg batch
	seqStride  = uint32(payloadLen)        // inner TCP seq advances per packet
	ipipProto  = 4                         // IPPROTO_IPIP
	innerSport = 40000                     // inner TCP ports
	innerDport = 5201                      //
	rxHdrs     = ipLen + ipLen + tcpLen    // headers per (inner) packet as B's raw socket sees it
	maxDgram   = 1 << 16                   // a GRO'd IPIP packet fits
)

var (
	outerSrc = [4]byte{10, 99, 0, 1}
	outerDst = [4]byte{10, 99, 0, 2}
	innerSrc = [4]byte{10, 200, 0, 1}
	innerDst = [4]byte{10, 200, 1, 1}
)

func payloadByte(seq uint32) byte { return byte(seq ^ seq>>8 ^ seq>>16) }

func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// putIPv4 writes a 20-byte IPv4 header (DF set, TTL 64) with its checksum.
func putIPv4(b []byte, totLen int, id uint16, proto uint8, src, dst [4]byte) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(totLen))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF
	b[8], b[9] = 64, proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], ^csumFold(csumAdd(0, b[:20])))
}

// putInner writes a complete inner IPv4/TCP packet (innerLen bytes) whose
// TCP sequence number is seq, with valid IP and TCP checksums.
func putInner(b []byte, seq uint32) {
	b = b[:innerLen]
	putIPv4(b, innerLen, uint16(seq/seqStride), 6, innerSrc, innerDst)
	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:], innerSport)
	binary.BigEndian.PutUint16(t[2:], innerDport)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], 1)
	t[12], t[13] = 5<<4, 0x10 // data offset 5, ACK (no PSH, which would stop GRO)
	binary.BigEndian.PutUint16(t[14:], 0xffff)
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	for i := range payloadLen {
		t[tcpLen+i] = payloadByte(seq + uint32(i))
	}
	ps := csumAdd(0, innerSrc[:])
	ps = csumAdd(ps, innerDst[:])
	ps += 6 + uint32(len(t))
	binary.BigEndian.PutUint16(t[16:], ^csumFold(csumAdd(ps, t)))
}

// headTemplate is the Ethernet + outer IPv4 header a packet-socket sender
// prepends (id 0, checksum for id 0).
func headTemplate(dst, src net.HardwareAddr) [headLen]byte {
	var h [headLen]byte
	copy(h[0:6], dst)
	copy(h[6:12], src)
	binary.BigEndian.PutUint16(h[12:], 0x0800)
	putIPv4(h[ethLen:], outerLen, 0, ipipProto, outerSrc, outerDst)
	return h
}

// putHead writes the per-packet header: the template with IP id set and the
// checksum updated incrementally (RFC 1624), as a backend would.
func putHead(b []byte, tmpl *[headLen]byte, id uint16) {
	copy(b[:headLen], tmpl[:])
	ip := b[ethLen:]
	binary.BigEndian.PutUint16(ip[4:], id)
	c := uint32(^binary.BigEndian.Uint16(ip[10:])) + uint32(id) // HC' = ~(~HC + m')
	binary.BigEndian.PutUint16(ip[10:], ^csumFold(c))
}

// innerSet is batch prebuilt inner packets with consecutive sequence
// numbers, as one TUN read's worth of one TCP flow.
func innerSet(base uint32) [][]byte {
	flat := make([]byte, batch*innerLen)
	ps := make([][]byte, batch)
	for i := range ps {
		ps[i] = flat[i*innerLen : (i+1)*innerLen : (i+1)*innerLen]
		putInner(ps[i], base+uint32(i)*seqStride)
	}
	return ps
}

// outerInfo is what B's raw socket saw of one IPIP packet.
type outerInfo struct {
	TotLen            int
	ID                uint16
	TTL, TOS          uint8
	DF                bool
	OuterOK, InnerOK  bool // IPv4 header checksums
	TCPOK, PayloadOK  bool
	Seq               uint32
	Segments          int // inner TCP segments this datagram stands for (GRO)
	Src, Dst          string
	InnerSrc, InnerDs string
}

// decodeIPIP checks one datagram read from B's raw socket (outer IPv4
// header first) with gopacket, plus the checksums gopacket does not verify.
func decodeIPIP(d []byte) (outerInfo, error) {
	var o outerInfo
	pkt := gopacket.NewPacket(d, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: true})
	var ips []*layers.IPv4
	for _, l := range pkt.Layers() {
		if ip, ok := l.(*layers.IPv4); ok {
			ips = append(ips, ip)
		}
	}
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if len(ips) != 2 || tcp == nil || pkt.ErrorLayer() != nil {
		return o, fmt.Errorf("not IPv4-in-IPv4/TCP: %v", pkt)
	}
	out, in := ips[0], ips[1]
	if out.Protocol != layers.IPProtocolIPv4 {
		return o, fmt.Errorf("outer protocol %v", out.Protocol)
	}
	o.TotLen, o.ID, o.TTL, o.TOS = int(out.Length), out.Id, out.TTL, out.TOS
	o.DF = out.Flags&layers.IPv4DontFragment != 0
	o.OuterOK = csumFold(csumAdd(0, d[:ipLen])) == 0xffff
	o.InnerOK = csumFold(csumAdd(0, d[ipLen:2*ipLen])) == 0xffff
	o.Src, o.Dst, o.InnerSrc, o.InnerDs = out.SrcIP.String(), out.DstIP.String(), in.SrcIP.String(), in.DstIP.String()
	seg := d[2*ipLen : ipLen+int(in.Length)]
	ps := csumAdd(0, in.SrcIP.To4())
	ps = csumAdd(ps, in.DstIP.To4())
	ps += 6 + uint32(len(seg))
	o.TCPOK = csumFold(csumAdd(ps, seg)) == 0xffff
	o.Seq = tcp.Seq
	o.PayloadOK = len(tcp.Payload) > 0 && len(tcp.Payload)%payloadLen == 0
	for i, c := range tcp.Payload {
		if c != payloadByte(tcp.Seq+uint32(i)) {
			o.PayloadOK = false
			break
		}
	}
	o.Segments = len(tcp.Payload) / payloadLen
	return o, nil
}

// segments is how many inner packets a datagram of n bytes from B's raw
// socket stands for: 1, or k when GRO merged k segments of one flow.
func segments(n int) int {
	if n <= rxHdrs {
		return 1
	}
	return (n - rxHdrs + payloadLen - 1) / payloadLen
}
