package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnelplane/bench/topo"
)

// TestPacketSend runs tunneld with underlay.raw_send: packet (packet
// sockets on the underlay device) against a tunneld with the raw IP
// socket, for IPIP and GRE, in both veth offload settings: ping, TCP both
// ways checked by hash, UDP; the metrics must show the packets going the
// packet socket's way with nothing refused.
func TestPacketSend(t *testing.T) {
	for _, enc := range []string{"ipip", "gre"} {
		t.Run(enc, func(t *testing.T) {
			bothOffloads(t, func(t *testing.T, offloads bool) { packetSendCase(t, enc, offloads) })
		})
	}
}

func packetSendCase(t *testing.T, enc string, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	body := "  type: " + enc + "\n"
	cfgA := tunneldConfig("tun", body, "", la, lb, oa, ob, "", "")
	cfgA = withUnderlay(cfgA, "raw_send: packet")
	cfgA = withMetrics(cfgA)
	a := startTunneld(t, p.A, "tp0", cfgA)
	if !strings.Contains(a.log.String(), "packet sockets send") {
		t.Fatalf("tunneld did not open the packet sockets:\n%s", a.log)
	}
	startTunneld(t, p.B, "tp0", tunneldConfig("tun", body, "", lb, la, ob, oa, "", ""))
	ping(t, p.A, ob.Addr())
	ping(t, p.B, oa.Addr())
	// The first packets go the raw socket's way while the kernel resolves
	// the peer's MAC; the packet socket takes over within a second.
	time.Sleep(1200 * time.Millisecond)
	tcpTransfer(t, p.A, p.B, ob.Addr(), 16<<20)
	tcpTransfer(t, p.B, p.A, oa.Addr(), 4<<20)
	udpTransfer(t, p.A, p.B, ob.Addr(), 200)
	text := scrape(t, p.A)
	sent := metricValue(t, text, "tunneld_packet_socket_packets_total")
	tx := metricValue(t, text, "tunneld_tx_packets_total")
	refused := metricValue(t, text, "tunneld_drops_total", `reason="underlay_write"`, `direction="egress"`)
	t.Logf("packet socket %.0f of %.0f packets sent; refused %.0f", sent, tx, refused)
	if sent < tx/2 {
		t.Errorf("only %.0f of %.0f packets went through the packet socket", sent, tx)
	}
	if refused != 0 {
		t.Errorf("%.0f packets refused", refused)
	}
}
