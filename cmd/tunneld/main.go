// Command tunneld runs the tunnelplane data plane on one node: it reads a
// YAML config, creates the TUN/TAP device, opens the underlay socket and
// forwards until SIGINT or SIGTERM, then removes what it created.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"tunnelplane/dataplane"
	"tunnelplane/dataplane/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("tunneld", flag.ContinueOnError)
	cfgPath := fs.String("config", "/etc/tunnelplane/tunneld.yaml", "config file (YAML)")
	check := fs.Bool("check-config", false, "validate the config file, print problems with line numbers, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	statsEvery := fs.Duration("stats-interval", 0, "log forwarding counters at this interval (0: only at exit)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("tunneld", version)
		return 0
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *check {
		fmt.Printf("%s: ok (%s over %s, device %s mtu %d, %d peers)\n", *cfgPath, cfg.Encap.Type, cfg.Underlay.Local, cfg.Device.Name, cfg.Device.MTU, len(cfg.Peers))
		return 0
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(cfg.Log.Level)}))
	return serve(cfg, *cfgPath, log, *statsEvery)
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func serve(cfg *config.Config, path string, log *slog.Logger, statsEvery time.Duration) int {
	dp, err := dataplane.New(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	dp.Start()
	m := newMetrics(dp, cfg)
	if cfg.Metrics.Listen != "" {
		srv, err := serveHTTP(cfg.Metrics.Listen, m.reg, log)
		if err != nil {
			log.Error("metrics listener", "err", err)
			dp.Close()
			return 1
		}
		defer srv.Close()
	}
	log.Info("forwarding", "device", cfg.Device.Name, "mode", cfg.Device.Mode, "encap", cfg.Encap.Type,
		"local", cfg.Underlay.Local, "mtu", cfg.Device.MTU, "peers", len(cfg.Peers), "version", version)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tick <-chan time.Time
	if statsEvery > 0 {
		t := time.NewTicker(statsEvery)
		defer t.Stop()
		tick = t.C
	}
	code := 0
loop:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if reload(dp, cfg, path, log) {
					m.reloads.Inc()
				} else {
					m.reloadFailures.Inc()
				}
				continue
			}
			log.Info("stopping", "signal", s.String())
			break loop
		case err := <-dp.Err():
			log.Error("data plane failed", "err", err)
			code = 1
			break loop
		case <-tick:
			logStats(log, dp)
		case <-ctx.Done():
			break loop
		}
	}
	dp.Close()
	logStats(log, dp)
	return code
}

// reload re-reads the config and applies a change of peers. Changes to
// anything else need a restart; they are reported, and the running
// configuration stays.
func reload(dp *dataplane.Dataplane, cur *config.Config, path string, log *slog.Logger) bool {
	next, err := config.Load(path)
	if err != nil {
		log.Error("reload rejected: keeping the running config", "err", err)
		return false
	}
	if next.Device.Name != cur.Device.Name || next.Device.Mode != cur.Device.Mode || next.Encap != cur.Encap || next.Underlay != cur.Underlay {
		log.Warn("reload: only peers change live; restart tunneld for device, encap or underlay changes")
	}
	if err := dp.SetPeers(dataplane.PeersFromConfig(next)); err != nil {
		log.Error("reload: routes", "err", err)
		return false
	}
	log.Info("reloaded", "peers", len(next.Peers))
	return true
}

func logStats(log *slog.Logger, dp *dataplane.Dataplane) {
	s := dp.Stats()
	attrs := []any{"egress_in", s.EgressRxPackets, "egress_out", s.EgressTxPackets, "ingress_in", s.IngressRxPackets, "ingress_out", s.IngressTxPackets,
		"batches_device_read", s.DeviceReads, "batches_underlay_write", s.UnderlayWrites, "batches_underlay_read", s.UnderlayReads, "batches_device_write", s.DeviceWrites}
	for k, v := range s.Drops {
		attrs = append(attrs, "drop_"+k, v)
	}
	log.Info("counters", attrs...)
}
