package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tunnelplane/dataplane/config"
)

// serveHTTP starts the operator listener (see newMux). It binds to
// loopback by default (config metrics.listen).
func serveHTTP(cfg config.Metrics, reg *prometheus.Registry, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: newMux(reg, cfg.PProf)}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("http listener stopped", "err", err)
		}
	}()
	log.Info("http listener", "addr", ln.Addr().String(), "pprof", cfg.PProf)
	return srv, nil
}

// newMux serves /metrics and /healthz, and /debug/pprof/ only when pprof is
// on (config metrics.pprof): profiles expose goroutine stacks and the
// command line, and a CPU profile or trace costs CPU on a busy node.
func newMux(reg *prometheus.Registry, withPProf bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if withPProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
