// Package devicetest holds a fake device queue (Fake) for pipeline tests,
// and builds what a device with offloads hands over and
// checks what it is given, for the tests of the device package and of the
// data plane: inner super-packets with partial checksums, packets from
// gopacket layers, and an independent checksum check.
//
// It imports gopacket and encap, never device itself, so that device's
// own tests may use it.
package devicetest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/encap"
)

// TCP flags for SuperPacket.
const (
	FlagFIN = 0x01
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagCWR = 0x80
)

// SuperPacket builds what a TUN device with offloads hands over for a TCP
// (or UDP) send of pay bytes from 10.200.0.1 / fd00:200::1 to .2 / ::2:
// one packet with lengths for the whole and the checksum field holding
// the pseudo-header sum. It returns the packet and its payload.
func SuperPacket(tb testing.TB, v6, udp bool, pay int, flags uint8) (pkt, payload []byte) {
	tb.Helper()
	payload = make([]byte, pay)
	for i := range payload {
		payload[i] = byte(i*7 + i>>9)
	}
	var ipl gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64,
			SrcIP: net.ParseIP("fd00:200::1"), DstIP: net.ParseIP("fd00:200::2")}
		if udp {
			ip.NextHeader = layers.IPProtocolUDP
		}
		ipl, nl = ip, ip
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 100, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IP{10, 200, 0, 1}, DstIP: net.IP{10, 200, 0, 2}}
		if udp {
			ip.Protocol = layers.IPProtocolUDP
		}
		ipl, nl = ip, ip
	}
	var l4 gopacket.SerializableLayer
	if udp {
		u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
		u.SetNetworkLayerForChecksum(nl)
		l4 = u
	} else {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1 << 31, Ack: 9, Window: 100,
			ACK: flags&FlagACK != 0, PSH: flags&FlagPSH != 0, FIN: flags&FlagFIN != 0, CWR: flags&FlagCWR != 0,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
		tcp.SetNetworkLayerForChecksum(nl)
		l4 = tcp
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ipl, l4, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	p := append([]byte(nil), buf.Bytes()...)
	iphl, csumOffset, proto := 20, 16, encap.ProtoTCP
	if v6 {
		iphl = 40
	}
	if udp {
		csumOffset, proto = 6, encap.ProtoUDP
	}
	acc := encap.PseudoHeaderSum(Addr(p, v6, true), Addr(p, v6, false), uint8(proto), len(p)-iphl)
	binary.BigEndian.PutUint16(p[iphl+csumOffset:], encap.Fold(acc))
	return p, payload
}

// Addr returns the source (src) or destination address of packet p.
func Addr(p []byte, v6, src bool) netip.Addr {
	switch {
	case v6 && src:
		return netip.AddrFrom16([16]byte(p[8:24]))
	case v6:
		return netip.AddrFrom16([16]byte(p[24:40]))
	case src:
		return netip.AddrFrom4([4]byte(p[12:16]))
	}
	return netip.AddrFrom4([4]byte(p[16:20]))
}

// Serialize builds a packet from layers with lengths and checksums filled.
func Serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// CheckL4 decodes ip with gopacket and recomputes its TCP/UDP checksum;
// it returns the transport payload, and fails unless the checksum in the
// packet is the correct one.
func CheckL4(tb testing.TB, ip []byte) []byte {
	tb.Helper()
	first := layers.LayerTypeIPv4
	if ip[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pk := gopacket.NewPacket(ip, first, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket: %v", el.Error())
	}
	nl := pk.NetworkLayer()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true}
	if tcp, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		got := tcp.Checksum
		tcp.SetNetworkLayerForChecksum(nl)
		if err := gopacket.SerializeLayers(buf, opts, tcp, gopacket.Payload(tcp.Payload)); err != nil {
			tb.Fatal(err)
		}
		if tcp.Checksum != got {
			tb.Fatalf("TCP checksum %#04x, want %#04x", got, tcp.Checksum)
		}
		return tcp.Payload
	}
	udp, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		tb.Fatalf("neither TCP nor UDP: %v", pk)
	}
	got := udp.Checksum
	udp.SetNetworkLayerForChecksum(nl)
	if err := gopacket.SerializeLayers(buf, opts, udp, gopacket.Payload(udp.Payload)); err != nil {
		tb.Fatal(err)
	}
	if udp.Checksum != got {
		tb.Fatalf("UDP checksum %#04x, want %#04x", got, udp.Checksum)
	}
	return udp.Payload
}
