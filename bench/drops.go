package bench

import (
	"tunnelplane/bench/topo"
)

// UDPDrops says where the datagrams of a UDP test were lost (counter
// deltas over the test; -1 where a counter could not be read).
type UDPDrops struct {
	// SenderDevTxDropped: tx_dropped of the device the sender's traffic
	// leaves A by (tp0 for tunneld: the TUN queue was full because tunneld
	// did not read fast enough; vxlan42 or veth-a otherwise).
	SenderDevTxDropped int64 `json:"sender_dev_tx_dropped"`
	// ReceiverUDPRcvbufErrors: UDP datagrams B dropped for a full socket
	// receive buffer (any UDP socket in B, tunneld's underlay socket
	// included).
	ReceiverUDPRcvbufErrors int64 `json:"receiver_udp_rcvbuf_errors"`
	// ReceiverUDPInErrors: all UDP receive errors in B.
	ReceiverUDPInErrors int64  `json:"receiver_udp_in_errors"`
	SenderDev           string `json:"sender_dev"`
}

// udpCounters reads the namespace's UDP counters ("Udp.RcvbufErrors").
func udpCounters(ns *topo.NS) (map[string]int64, error) { return ns.SNMP() }

// devTxDropped reads a device's tx_dropped counter over netlink.
func devTxDropped(ns *topo.NS, ifname string) int64 {
	l, err := ns.Handle().LinkByName(ifname)
	if err != nil || l.Attrs().Statistics == nil {
		return -1
	}
	return int64(l.Attrs().Statistics.TxDropped)
}

// dropProbe snapshots the counters before a UDP test; done returns the
// deltas.
type dropProbe struct {
	from, to *topo.NS
	dev      string
	tx0      int64
	udp0     map[string]int64
}

func startDropProbe(from, to *topo.NS, dev string) *dropProbe {
	p := &dropProbe{from: from, to: to, dev: dev, tx0: devTxDropped(from, dev)}
	p.udp0, _ = udpCounters(to)
	return p
}

func (p *dropProbe) done() *UDPDrops {
	d := &UDPDrops{SenderDev: p.dev, SenderDevTxDropped: -1, ReceiverUDPRcvbufErrors: -1, ReceiverUDPInErrors: -1}
	if tx1 := devTxDropped(p.from, p.dev); tx1 >= 0 && p.tx0 >= 0 {
		d.SenderDevTxDropped = tx1 - p.tx0
	}
	if u1, err := udpCounters(p.to); err == nil && p.udp0 != nil {
		d.ReceiverUDPRcvbufErrors = u1["Udp.RcvbufErrors"] - p.udp0["Udp.RcvbufErrors"]
		d.ReceiverUDPInErrors = u1["Udp.InErrors"] - p.udp0["Udp.InErrors"]
	}
	return d
}
