package main

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// TestECNDecap: the outer ECN CE mark of a tunnel packet reaches the inner
// packet (RFC 6040, as the kernel's tunnels do it). B's own kernel builds
// the outer header, with the TOS set on its socket (a UDP one for VXLAN,
// a raw IPIP or GRE one); the inner packets are built with gopacket; the
// receiving socket in A reports each datagram's TOS (IP_RECVTOS). CE over an ECN-capable inner packet: the
// inner packet arrives marked CE. CE over a not-ECN-capable one: dropped
// and counted (ecn_not_ect). ECT(0) outside: nothing changes.
func TestECNDecap(t *testing.T) {
	for _, enc := range []string{"vxlan", "ipip", "gre"} {
		for _, kpath := range []bool{false, true} {
			name := enc
			if kpath {
				name += "/kernel_path"
			}
			t.Run(name, func(t *testing.T) {
				bothOffloads(t, func(t *testing.T, offloads bool) { ecnCase(t, enc, kpath, offloads) })
			})
		}
	}
}

// With kernel_path: on, the decap program leaves CE-marked packets to the
// user-space path (decap_ce), which applies the rule.
func ecnCase(t *testing.T, enc string, kpath, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 1, 1}, net.HardwareAddr{2, 0, 0, 0, 2, 2}
	encYAML := "  type: " + enc + "\n"
	if enc == "vxlan" {
		encYAML += "  vni: 42\n"
	}
	cfg := tunneldConfig("tun", encYAML, "", la, lb, oa, ob, macA.String(), macB.String())
	cfg = withMetrics(cfg)
	if kpath {
		cfg = withUnderlay(cfg, "kernel_path: on")
	}
	startTunneld(t, p.A, "tp0", cfg)
	_, sink := listenIn(t, p.A, "udp", netip.AddrPortFrom(oa.Addr(), 9999).String())
	defer sink.Close()

	// send sends n inner UDP datagrams with inner TOS in, in outer packets
	// with outer TOS out.
	send := func(in, out uint8, n int) {
		t.Helper()
		ip := &layers.IPv4{Version: 4, TTL: 64, TOS: in, Protocol: layers.IPProtocolUDP, SrcIP: ob.Addr().AsSlice(), DstIP: oa.Addr().AsSlice()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
		udp.SetNetworkLayerForChecksum(ip)
		ls := []gopacket.SerializableLayer{ip, udp, gopacket.Payload("ecn")}
		if enc == "gre" {
			ls = append([]gopacket.SerializableLayer{&layers.GRE{Protocol: layers.EthernetTypeIPv4}}, ls...)
		}
		if enc == "vxlan" {
			ls = append([]gopacket.SerializableLayer{
				&layers.VXLAN{ValidIDFlag: true, VNI: 42},
				&layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: layers.EthernetTypeIPv4},
			}, ls...)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		err := p.B.Do(func() error {
			var c net.PacketConn
			var err error
			var dst net.Addr
			if enc == "vxlan" {
				c, err = net.ListenPacket("udp4", netip.AddrPortFrom(lb, 0).String())
				dst = net.UDPAddrFromAddrPort(netip.AddrPortFrom(la, 4789))
			} else {
				proto := map[string]string{"ipip": "ip4:4", "gre": "ip4:47"}[enc]
				c, err = net.ListenPacket(proto, lb.String())
				dst = &net.IPAddr{IP: la.AsSlice()}
			}
			if err != nil {
				return err
			}
			defer c.Close()
			if err := ipv4.NewPacketConn(c).SetTOS(int(out)); err != nil {
				return err
			}
			for range n {
				if _, err := c.WriteTo(buf.Bytes(), dst); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// received reads n datagrams and returns how many arrived with each
	// ECN codepoint (the sink reports the TOS, IP_RECVTOS).
	uc := sink.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) })
	if err != nil {
		t.Fatal(err)
	}
	received := func(n int) (ecn [4]int) {
		t.Helper()
		buf, oob := make([]byte, 2048), make([]byte, 64)
		for i := range n {
			uc.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, oobn, _, _, err := uc.ReadMsgUDP(buf, oob)
			if err != nil {
				t.Fatalf("datagram %d of %d not received: %v", i+1, n, err)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 || msgs[0].Header.Type != unix.IP_TOS || len(msgs[0].Data) < 1 {
				t.Fatalf("datagram %d: no IP_TOS control message (%v)", i+1, err)
			}
			ecn[msgs[0].Data[0]&3]++
		}
		return ecn
	}
	const n = 20
	send(0x02, 0x03, n) // ECT(0) inside, CE outside: arrives CE
	if got := received(n); got[3] != n {
		t.Errorf("CE over ECT(0): arrived by codepoint (not-ECT, ECT(1), ECT(0), CE) %v, want all %d CE", got, n)
	}
	send(0x01, 0x03, n) // ECT(1) inside, CE outside: arrives CE
	if got := received(n); got[3] != n {
		t.Errorf("CE over ECT(1): arrived by codepoint %v, want all %d CE", got, n)
	}
	send(0x02, 0x02, n) // ECT(0) both: unchanged
	if got := received(n); got[2] != n {
		t.Errorf("ECT(0) over ECT(0): arrived by codepoint %v, want all %d ECT(0)", got, n)
	}
	send(0x00, 0x03, n) // not ECN-capable inside, CE outside: dropped
	text := scrape(t, p.A)
	for deadline := time.Now().Add(5 * time.Second); metricValue(t, text, "tunneld_drops_total", `reason="ecn_not_ect"`, `direction="ingress"`) < n && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		text = scrape(t, p.A)
	}
	if d := metricValue(t, text, "tunneld_drops_total", `reason="ecn_not_ect"`, `direction="ingress"`); d != n {
		t.Errorf("CE over not-ECT: %.0f drops counted as ecn_not_ect, want %d", d, n)
	}
	sink.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := sink.ReadFrom(make([]byte, 2048)); err == nil {
		t.Error("CE over not-ECT: a datagram was delivered")
	}
	if kpath {
		// 20 CE over ECT(0), 20 over ECT(1), 20 over not-ECT; the 20
		// ECT(0) ones the programs take.
		if ce, got := metricValue(t, text, "tunneld_kernel_path_packets_total", `reason="decap_ce"`), metricValue(t, text, "tunneld_kernel_path_packets_total", `reason="decap_received"`); ce != 3*n || got < n {
			t.Errorf("kernel path: decap_ce %.0f (want %d), decap_received %.0f (want at least %d)", ce, 3*n, got, n)
		}
	}
}
