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
	"runtime/debug"
	"syscall"
	"time"

	"tunnelplane/dataplane"
	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/flannel"
	"tunnelplane/dataplane/privs"
	"tunnelplane/dataplane/routes"
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
	printCfg := fs.Bool("print-config", false, "print the effective config (file plus defaults and preset) as YAML, and exit")
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
	if *printCfg {
		out, err := cfg.Marshal()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.Write(out)
		return 0
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

// service is one running tunneld: the backend, the sources of its peers
// (the config file and, with peers_from: routes, the kernel's routes), and
// the operator interfaces. Every change of peers happens on the goroutine
// running loop, so the backend sees one writer.
type service struct {
	cfg     *config.Config
	path    string
	log     *slog.Logger
	be      backend
	dp      *dataplane.Dataplane // nil on the kernel backend
	m       *metrics
	learned []routes.Peer
	fl      *flannelNode  // nil unless peers_from: flannel
	leased  []config.Peer // the last snapshot of flannel leases
}

func serve(cfg *config.Config, path string, log *slog.Logger, statsEvery time.Duration) int {
	// SIGHUP is ours from the start: the device appears (and a supervisor
	// or a test may send a reload) before the loop runs, and SIGHUP's
	// default action would end the process. SIGINT and SIGTERM keep
	// theirs until the loop (below) can shut down in order, so that a
	// start stuck on an unreachable control plane can still be stopped.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP)
	defer signal.Stop(sigs)
	fl, err := joinFlannel(cfg, log) // before the device: its address comes from the lease
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if fl != nil {
		defer fl.close()
	}
	be, dp, err := openBackend(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if fl != nil {
		if err := fl.setUp(cfg); err != nil {
			log.Error("start", "err", err)
			be.Close()
			return 1
		}
	}
	d := &service{cfg: cfg, path: path, log: log, be: be, dp: dp, fl: fl}
	d.m = newMetrics(dp, cfg, be.Name())
	if fl != nil {
		d.m.addFlannel(fl.stats)
	}
	if cfg.Metrics.Listen != "" {
		srv, err := serveHTTP(cfg.Metrics, d.m.reg, log)
		if err != nil {
			log.Error("metrics listener", "err", err)
			be.Close()
			return 1
		}
		defer srv.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	learnedc := make(chan []routes.Peer, 1)
	watchErr := make(chan error, 1)
	if cfg.PeersFrom == config.PeersFromRoutes {
		go func() {
			watchErr <- routes.Watch(ctx, cfg.Device.Name, func(ps []routes.Peer) {
				select { // keep only the newest snapshot
				case <-learnedc:
				default:
				}
				learnedc <- ps
			})
		}()
	}
	if fl != nil {
		go fl.run(ctx)
	}
	dropPrivileges(log)
	log.Info("forwarding", "backend", be.Name(), "device", cfg.Device.Name, "mode", cfg.Device.Mode, "encap", cfg.Encap.Type,
		"local", cfg.Underlay.Local, "mtu", cfg.Device.MTU, "peers", len(cfg.Peers), "peers_from", cfg.PeersFrom, "version", version)
	code := d.loop(sigs, statsEvery, learnedc, watchErr)
	cancel()
	be.Close()
	if dp != nil {
		logStats(log, dp)
	}
	return code
}

func (d *service) loop(sigs chan os.Signal, statsEvery time.Duration, learnedc <-chan []routes.Peer, watchErr <-chan error) int {
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	var tick <-chan time.Time
	if statsEvery > 0 && d.dp != nil {
		t := time.NewTicker(statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if d.reload() {
					d.m.reloads.Inc()
				} else {
					d.m.reloadFailures.Inc()
				}
				continue
			}
			d.log.Info("stopping", "signal", s.String())
			return 0
		case err := <-d.be.Err():
			d.log.Error("data plane failed", "err", err)
			return 1
		case err := <-watchErr:
			d.log.Error("route watcher stopped", "err", err)
			return 1
		case ps := <-d.flannelPeers():
			t0 := time.Now()
			d.leased = ps
			if err := d.applyPeers(d.cfg, t0); err != nil {
				d.log.Error("peers from flannel", "err", err)
			}
		case err := <-d.flannelErr():
			d.log.Error("flannel stopped", "err", err)
			return 1
		case ps := <-learnedc:
			t0 := time.Now()
			d.learned = ps
			if err := d.applyPeers(d.cfg, t0); err != nil {
				d.log.Error("peers from routes", "err", err)
			}
		case <-tick:
			logStats(d.log, d.dp)
		}
	}
}

// applyPeers gives the backend the configured peers plus, in route-driven
// mode, the ones learned from kernel routes.
// t0 is when the change arrived, for the took= of the log line.
func (d *service) applyPeers(cfg *config.Config, t0 time.Time) error {
	peers := cfg.Peers
	var learned []routes.Peer
	if cfg.PeersFrom == config.PeersFromRoutes {
		var notes []string
		peers, notes = routes.Merge(cfg, d.learned)
		for _, n := range notes {
			d.log.Warn("route-driven peer", "note", n)
		}
		learned = d.learned
	}
	if cfg.PeersFrom == config.PeersFromFlannel {
		var notes []string
		peers, notes = flannel.Merge(cfg.Peers, d.leased)
		for _, n := range notes {
			d.log.Warn("flannel peer", "note", n)
		}
	}
	d.m.peers.Set(float64(len(peers)))
	err := d.be.SetPeers(peers, learned)
	if cfg.PeersFrom == config.PeersFromRoutes {
		d.log.Info("peers from routes", "learned", len(d.learned), "peers", len(peers), "took", time.Since(t0).Round(time.Microsecond))
	}
	if cfg.PeersFrom == config.PeersFromFlannel {
		d.log.Info("peers from flannel", "leases", len(d.leased), "peers", len(peers), "took", time.Since(t0).Round(time.Microsecond))
	}
	return err
}

// reload re-reads the config and applies a change of peers. Changes to
// anything else need a restart; they are reported, and the running
// configuration stays.
func (d *service) reload() bool {
	t0 := time.Now()
	next, err := config.Load(d.path)
	if err != nil {
		d.log.Error("reload rejected: keeping the running config", "err", err)
		return false
	}
	cur := d.cfg
	if next.Device.Name != cur.Device.Name || next.Device.Mode != cur.Device.Mode || next.Encap != cur.Encap ||
		next.Underlay != cur.Underlay || next.Backend != cur.Backend || next.PeersFrom != cur.PeersFrom {
		d.log.Warn("reload: only peers change live; restart tunneld for device, encap, underlay, backend or peers_from changes")
	}
	// Only the peers of the new file are taken; the rest stays as started.
	applied := *cur
	applied.Peers = next.Peers
	if err := d.applyPeers(&applied, t0); err != nil {
		d.log.Error("reload: peers", "err", err)
		return false
	}
	d.cfg = &applied
	d.log.Info("reloaded", "peers", len(next.Peers), "took", time.Since(t0).Round(time.Microsecond))
	// A large file leaves its parse tree and the old snapshot behind; hand
	// that memory back now rather than keep it for the next reload, which
	// may be hours away. One collection per reload is cheap next to the
	// parse itself.
	debug.FreeOSMemory()
	return true
}

// dropPrivileges keeps only CAP_NET_ADMIN and CAP_NET_RAW once the device
// and sockets exist: enough for live peer changes and for removing the
// device at exit, and nothing a compromised parser could use beyond that.
func dropPrivileges(log *slog.Logger) {
	if os.Geteuid() != 0 {
		return
	}
	if err := privs.Drop(); err != nil {
		log.Warn("could not drop capabilities; running with full root privileges", "err", err)
		return
	}
	if c, err := privs.Current(); err == nil {
		log.Info("capabilities dropped", "kept", privs.Format(c))
	}
}

func logStats(log *slog.Logger, dp *dataplane.Dataplane) {
	s := dp.Stats()
	attrs := []any{"egress_in", s.EgressRxPackets, "egress_out", s.EgressTxPackets, "ingress_in", s.IngressRxPackets, "ingress_out", s.IngressTxPackets,
		"batches_device_read", s.DeviceReads, "batches_underlay_write", s.UnderlayWrites, "batches_underlay_read", s.UnderlayReads, "batches_device_write", s.DeviceWrites,
		"partial_checksums", s.PartialChecksums, "super_packets", s.SuperPackets}
	for k, v := range s.Drops {
		attrs = append(attrs, "drop_"+k, v)
	}
	log.Info("counters", attrs...)
}
