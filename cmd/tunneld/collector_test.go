package main

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"tunnelplane/dataplane/stats"
)

type fakeSnapshot stats.Snapshot

func (f *fakeSnapshot) Snapshot() stats.Snapshot { return stats.Snapshot(*f) }

// TestCollectorSeries: every series the collector exports, with its
// labels, from a plain snapshot (no data plane needed); every drop reason
// in both directions even at zero.
func TestCollectorSeries(t *testing.T) {
	s := &fakeSnapshot{NumPeers: 2, PoolFreeSmall: 7, RingRx: 3,
		Peers: []stats.PeerSnapshot{{Remote: netip.MustParseAddr("192.0.2.1"), RxPackets: 5, TxBytes: 9}}}
	s.UnderlayRead.Drops[stats.DropUnknownPeer] = 4
	s.DeviceWrite.PartialCsum = 2
	s.UnderlayRead.Supers.Buckets[1] = 1
	s.UnderlayWrite.Supers.Buckets[7] = 3
	s.Queues = []stats.QueueSnapshot{{DeviceRead: 1, UnderlayWrite: 2, UnderlayRead: 3, DeviceWrite: 4}, {DeviceRead: 5}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(s))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	value := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				value[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				value[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				value[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	want := map[string]int{
		"tunneld_peers": 1, "tunneld_rx_packets_total": 1, "tunneld_rx_bytes_total": 1,
		"tunneld_tx_packets_total": 1, "tunneld_tx_bytes_total": 1,
		"tunneld_drops_total": 2 * int(stats.NumDrops), "tunneld_pool_free_buffers": 2,
		"tunneld_ring_occupancy": 2, "tunneld_batch_size": 4, "tunneld_gso_segments": 1,
		"tunneld_gro_segments": 1, "tunneld_partial_checksum_packets_total": 1, "tunneld_super_packet_bytes": 1,
		"tunneld_tunnel_gso_frame_bytes": 1, "tunneld_queue_packets_total": 10, "tunneld_packet_socket_packets_total": 1,
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: %d series, want %d", name, got[name], n)
		}
	}
	for key, v := range map[string]float64{
		"tunneld_peers": 2, "tunneld_rx_packets_total,peer=192.0.2.1": 5, "tunneld_tx_bytes_total,peer=192.0.2.1": 9,
		"tunneld_drops_total,direction=ingress,reason=unknown_peer": 4, "tunneld_drops_total,direction=egress,reason=unknown_peer": 0,
		"tunneld_pool_free_buffers,pool=small": 7, "tunneld_ring_occupancy,ring=rx": 3,
		"tunneld_partial_checksum_packets_total": 2, "tunneld_super_packet_bytes": 1,
		"tunneld_batch_size,stage=device_write": 0, "tunneld_tunnel_gso_frame_bytes": 3,
		"tunneld_queue_packets_total,queue=0,stage=underlay_read": 3, "tunneld_queue_packets_total,queue=1,stage=device_read": 5,
	} {
		if got, ok := value[key]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, v)
		}
	}
}
