package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tunnelplane/dataplane"
	"tunnelplane/dataplane/config"
)

// metrics is tunneld's registry: the data plane's collector, the daemon's
// own counters, and the Go runtime and process collectors (RSS, GC).
type metrics struct {
	reg                     *prometheus.Registry
	reloads, reloadFailures prometheus.Counter
}

func newMetrics(dp *dataplane.Dataplane, cfg *config.Config) *metrics {
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
	backend.WithLabelValues("userspace", string(cfg.Encap.Type), cfg.Device.Name, string(cfg.Device.Mode)).Set(1)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tunneld_build_info", Help: "Build information (always 1).",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.reg.MustRegister(m.reloads, m.reloadFailures, backend, build,
		dataplane.NewCollector(dp),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
