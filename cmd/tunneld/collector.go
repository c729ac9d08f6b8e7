package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"tunnelplane/dataplane/stats"
)

// snapshotter is what the collector needs of the data plane: a
// point-in-time copy of its counters (dataplane.Dataplane.Snapshot).
type snapshotter interface {
	Snapshot() stats.Snapshot
}

// collector exports the data plane's counters to Prometheus. It reads a
// snapshot of the per-goroutine counters at scrape time, so the data path
// never touches Prometheus.
type collector struct {
	dp snapshotter

	rxPackets, rxBytes, txPackets, txBytes *prometheus.Desc
	drops, poolFree, ringOcc, peers        *prometheus.Desc
	batch, gso, gro                        *prometheus.Desc
	partial, supers, tunnelGSO, queue      *prometheus.Desc
	packetSocket                           *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

// newCollector returns a collector for dp; register it once.
func newCollector(dp snapshotter) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tunneld_"+name, help, labels, nil)
	}
	return &collector{
		dp:           dp,
		rxPackets:    desc("rx_packets_total", "Packets received from the peer and delivered to the device.", "peer"),
		rxBytes:      desc("rx_bytes_total", "Bytes (inner packets) received from the peer and delivered to the device.", "peer"),
		txPackets:    desc("tx_packets_total", "Packets encapsulated and sent to the peer.", "peer"),
		txBytes:      desc("tx_bytes_total", "Bytes (encapsulated, without the kernel's outer IP/UDP headers) sent to the peer.", "peer"),
		drops:        desc("drops_total", "Packets dropped, by reason and direction (egress: device to underlay; ingress: underlay to device).", "reason", "direction"),
		poolFree:     desc("pool_free_buffers", "Free buffers in each packet pool.", "pool"),
		ringOcc:      desc("ring_occupancy", "Packets waiting in each hand-over ring (pipeline: rings).", "ring"),
		peers:        desc("peers", "Peers in the current table."),
		batch:        desc("batch_size", "Packets per batch, by pipeline stage.", "stage"),
		gso:          desc("gso_segments", "Datagrams per underlay send (UDP GSO trains; 1 = a single datagram)."),
		gro:          desc("gro_segments", "Datagrams per underlay receive (UDP GRO; 1 = a single datagram)."),
		partial:      desc("partial_checksum_packets_total", "Inner packets received with a partial TCP/UDP checksum (a kernel peer's checksum offload), handed to the device with NEEDS_CSUM or completed."),
		supers:       desc("super_packet_bytes", "Inner super-packets received (larger than the device MTU: a kernel peer's GSO across a veth or virtio path), by size in bytes."),
		packetSocket: desc("packet_socket_packets_total", "Raw-IP tunnel packets sent through the packet sockets (underlay.raw_send: packet); the others went through the raw IP socket."),
		queue:        desc("queue_packets_total", "Packets per device queue and stage (device_read, underlay_write, underlay_read, device_write; device_answer: those of device_read read by the underlay reader right after its device write): how the flows spread over the queues.", "queue", "stage"),
		tunnelGSO:    desc("tunnel_gso_frame_bytes", "Inner TCP super-packets sent whole through the UDP-tunnel GSO TAP (underlay.tunnel_gso), by the bytes from the VXLAN header on."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.drops, c.poolFree, c.ringOcc, c.peers, c.batch, c.gso, c.gro, c.partial, c.supers, c.tunnelGSO, c.queue, c.packetSocket} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	}
	s := c.dp.Snapshot()
	gauge(c.peers, s.NumPeers)
	for _, p := range s.Peers {
		peer := p.Remote.String()
		counter(c.rxPackets, p.RxPackets, peer)
		counter(c.rxBytes, p.RxBytes, peer)
		counter(c.txPackets, p.TxPackets, peer)
		counter(c.txBytes, p.TxBytes, peer)
	}
	dr, uw, ur, dw := &s.DeviceRead, &s.UnderlayWrite, &s.UnderlayRead, &s.DeviceWrite
	for r := range stats.NumDrops {
		// Every reason is exported, zero or not, so that dashboards and
		// alerts can rely on the series existing.
		counter(c.drops, dr.Drops[r]+uw.Drops[r], r.String(), "egress")
		counter(c.drops, ur.Drops[r]+dw.Drops[r], r.String(), "ingress")
	}
	gauge(c.poolFree, s.PoolFreeSmall, "small")
	gauge(c.poolFree, s.PoolFreeLarge, "large")
	gauge(c.ringOcc, s.RingTx, "tx")
	gauge(c.ringOcc, s.RingRx, "rx")
	histogram(ch, c.batch, &dr.BatchSize, "device_read")
	histogram(ch, c.batch, &uw.BatchSize, "underlay_write")
	histogram(ch, c.batch, &ur.BatchSize, "underlay_read")
	histogram(ch, c.batch, &dw.BatchSize, "device_write")
	histogram(ch, c.gso, &uw.Segments)
	histogram(ch, c.gro, &ur.Segments)
	counter(c.partial, dw.PartialCsum)
	counter(c.packetSocket, uw.PacketSocket)
	histogramIn(ch, c.supers, &stats.SuperBuckets, &ur.Supers)
	histogramIn(ch, c.tunnelGSO, &stats.SuperBuckets, &uw.Supers)
	for i, q := range s.Queues {
		id := strconv.Itoa(i)
		counter(c.queue, q.DeviceRead, id, "device_read")
		counter(c.queue, q.UnderlayWrite, id, "underlay_write")
		counter(c.queue, q.UnderlayRead, id, "underlay_read")
		counter(c.queue, q.DeviceWrite, id, "device_write")
		counter(c.queue, q.DeviceAnswer, id, "device_answer")
	}
}

func histogram(ch chan<- prometheus.Metric, desc *prometheus.Desc, h *stats.HistSum, labels ...string) {
	histogramIn(ch, desc, &stats.HistBuckets, h, labels...)
}

func histogramIn(ch chan<- prometheus.Metric, desc *prometheus.Desc, bounds *stats.Bounds, h *stats.HistSum, labels ...string) {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, ub := range bounds {
		cum += h.Buckets[i]
		buckets[ub] = cum
	}
	cum += h.Buckets[len(bounds)]
	ch <- prometheus.MustNewConstHistogram(desc, cum, float64(h.Sum), buckets, labels...)
}
