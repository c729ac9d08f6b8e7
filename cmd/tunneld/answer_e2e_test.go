package main

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"tunnelplane/bench/topo"
)

// TestAnswerFromUnderlayReader runs two tunnelds with inline_answers: true
// over VXLAN, with and
// without the UDP-tunnel GSO TAP, in both veth offload settings, and
// checks that what the kernel answers to the underlay reader's device
// writes (echo replies, TCP ACKs and the data they release) leaves from
// the underlay reader (stage device_answer) and arrives intact: ping,
// TCP both ways checked by hash, UDP.
func TestAnswerFromUnderlayReader(t *testing.T) {
	for _, tap := range []bool{false, true} {
		name := "sockets"
		if tap {
			name = "tunnel-gso"
		}
		t.Run(name, func(t *testing.T) {
			bothOffloads(t, func(t *testing.T, offloads bool) { answerCase(t, tap, offloads) })
		})
	}
}

func answerCase(t *testing.T, tap, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	body := "  type: vxlan\n  vni: 42\n"
	cfgA := "inline_answers: true\n" + tunneldConfig("tun", body, "", la, lb, oa, ob, "", "")
	cfgB := "inline_answers: true\n" + tunneldConfig("tun", body, "", lb, la, ob, oa, "", "")
	if tap {
		requireTunnelGSO(t)
		cfgA = withUnderlay(cfgA, "tunnel_gso: auto")
		cfgB = withUnderlay(cfgB, "tunnel_gso: auto")
	}
	cfgB = withMetrics(cfgB)
	startTunneld(t, p.A, "tp0", cfgA)
	startTunneld(t, p.B, "tp0", cfgB)
	ping(t, p.A, ob.Addr())
	// B's echo replies are written by the kernel while B's underlay
	// reader writes the requests: they leave from there.
	if n := answered(t, scrape(t, p.B)); n < 1 {
		t.Errorf("B answered %v packets from its underlay reader after 3 pings, want the replies", n)
	}
	tcpTransfer(t, p.A, p.B, ob.Addr(), 16<<20)
	tcpTransfer(t, p.B, p.A, oa.Addr(), 16<<20)
	udpTransfer(t, p.A, p.B, ob.Addr(), 200)
	t.Logf("B answered %v packets from its underlay reader", answered(t, scrape(t, p.B)))
}

// answered sums tunneld_queue_packets_total{stage="device_answer"} over
// the queues.
func answered(t *testing.T, text string) float64 {
	t.Helper()
	var sum float64
	for q := 0; strings.Contains(text, `queue="`+strconv.Itoa(q)+`",stage="device_answer"`); q++ {
		sum += metricValue(t, text, "tunneld_queue_packets_total", `queue="`+strconv.Itoa(q)+`"`, `stage="device_answer"`)
	}
	return sum
}
