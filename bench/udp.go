package bench

import (
	"net/netip"
	"time"

	"tunnelplane/bench/topo"
)

// UDPOptions is one small-packet rate test: the sender in From blasts
// datagrams of Payload bytes at Dst:Port in To as fast as it can for
// Duration, in sendmmsg batches of Batch; the receiver counts what arrives.
type UDPOptions struct {
	From, To *topo.NS
	Dst      netip.Addr
	Port     int // 0: 9000
	Payload  int // 0: 64
	Batch    int // datagrams per sendmmsg/recvmmsg; 0: 64
	Duration time.Duration
}

// UDPResult is the outcome of a UDP rate test. Rates are per second of
// sending time; datagrams still arriving shortly after the sender stopped
// count as received.
type UDPResult struct {
	Payload  int     `json:"payload_bytes"`
	Seconds  float64 `json:"seconds"`
	Sent     int64   `json:"sent"`
	Received int64   `json:"received"`
	SentPPS  float64 `json:"sent_pps"`
	RecvPPS  float64 `json:"received_pps"`
	LossPct  float64 `json:"loss_pct"`
	// Drops: where the lost datagrams went (filled by Run).
	Drops *UDPDrops `json:"drops,omitempty"`
}

func (o *UDPOptions) defaults() {
	if o.Port == 0 {
		o.Port = 9000
	}
	if o.Payload == 0 {
		o.Payload = 64
	}
	if o.Payload < len(udpMagic) {
		o.Payload = len(udpMagic)
	}
	if o.Batch == 0 {
		o.Batch = 64
	}
	if o.Duration == 0 {
		o.Duration = time.Second
	}
}

func (r *UDPResult) finish() {
	if r.Seconds > 0 {
		r.SentPPS = float64(r.Sent) / r.Seconds
		r.RecvPPS = float64(r.Received) / r.Seconds
	}
	if r.Sent > 0 {
		lost := r.Sent - r.Received
		if lost < 0 {
			lost = 0
		}
		r.LossPct = 100 * float64(lost) / float64(r.Sent)
	}
}

// udpMagic starts every datagram so the receiver counts only its own.
var udpMagic = [8]byte{'t', 'u', 'n', 'b', 'e', 'n', 'c', 'h'}
