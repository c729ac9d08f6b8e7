package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tunnelplane/dataplane"
	"tunnelplane/dataplane/bpfpath"
	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/flannel"
)

// metrics is tunneld's registry: the data plane's collector, the daemon's
// own counters, and the Go runtime and process collectors (RSS, GC).
type metrics struct {
	reg                     *prometheus.Registry
	reloads, reloadFailures prometheus.Counter
	peers                   prometheus.Gauge // only on the kernel backend; the data plane reports its own
}

// newMetrics builds the registry; dp is nil on the kernel backend.
func newMetrics(dp *dataplane.Dataplane, cfg *config.Config, backendName string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunneld_reloads_total", Help: "Successful configuration reloads (SIGHUP).",
		}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunneld_reload_failures_total", Help: "Rejected configuration reloads; the running configuration stayed.",
		}),
	}
	backend := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tunneld_backend_info", Help: "The backend in use (always 1).",
	}, []string{"backend", "encap", "device", "mode"})
	backend.WithLabelValues(backendName, string(cfg.Encap.Type), cfg.Device.Name, string(cfg.Device.Mode)).Set(1)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tunneld_build_info", Help: "Build information (always 1).",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.peers = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tunneld_peers", Help: "Peers in the current table."})
	m.reg.MustRegister(m.reloads, m.reloadFailures, backend, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if dp != nil {
		m.reg.MustRegister(newCollector(dp))
		if _, ok, _ := dp.KernelPathCounters(); ok {
			m.reg.MustRegister(kernelPathCollector{dp})
		}
	} else {
		m.reg.MustRegister(m.peers)
	}
	return m
}

// addFlannel exports the flannel node's counters (peers_from: flannel),
// every series even at zero.
func (m *metrics) addFlannel(st *flannel.Stats) {
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	m.reg.MustRegister(
		counter("tunneld_flannel_malformed_leases_total", "Flannel lease writes skipped as malformed (logged).", st.MalformedLeases.Load),
		counter("tunneld_flannel_ignored_leases_total", "Flannel leases of another backend type, ignored (logged once each).", st.IgnoredLeases.Load),
		counter("tunneld_flannel_resyncs_total", "Full lease lists after a broken etcd or API server watch.", st.Resyncs.Load),
		counter("tunneld_flannel_control_plane_errors_total", "Failed requests to etcd or the Kubernetes API server (each retried, logged; forwarding keeps the last peers).", st.ControlPlaneErrors.Load),
		counter("tunneld_flannel_lease_renewals_total", "Renewals of this node's own lease.", st.Renewals.Load),
		counter("tunneld_flannel_snapshots_total", "Peer snapshots built from flannel leases (one per burst of changes).", st.Snapshots.Load),
	)
}

var kernelPathDesc = prometheus.NewDesc("tunneld_kernel_path_packets_total",
	"Packets the in-kernel fast path (underlay.kernel_path) saw, by what became of them: encap_sent and decap_received it carried, encap_no_room it dropped, the rest it left to the user-space path.",
	[]string{"reason"}, nil)

// kernelPathCollector reads the fast path's per-CPU counters at scrape
// time; every reason is exported, zeros included.
type kernelPathCollector struct{ dp *dataplane.Dataplane }

func (kernelPathCollector) Describe(ch chan<- *prometheus.Desc) { ch <- kernelPathDesc }

func (k kernelPathCollector) Collect(ch chan<- prometheus.Metric) {
	c, ok, err := k.dp.KernelPathCounters()
	if !ok || err != nil {
		return // detached (shutting down) or unreadable: no series rather than a failed scrape
	}
	for r, v := range c {
		ch <- prometheus.MustNewConstMetric(kernelPathDesc, prometheus.CounterValue, float64(v), bpfpath.Reason(r).String())
	}
}
