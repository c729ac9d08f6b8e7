package main

import (
	"fmt"
	"log/slog"
	"net/netip"

	"tunnelplane/dataplane"
	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/kernel"
	"tunnelplane/dataplane/routes"
)

// backend is what tunneld runs: the userspace data plane or a kernel link
// programmed over netlink. Both take the same peer list, so reloads and
// route-driven peers work the same way on either.
type backend interface {
	Name() string
	// SetPeers installs peers; learned are the ones taken from kernel
	// routes, whose routes belong to the routing daemon.
	SetPeers(peers []config.Peer, learned []routes.Peer) error
	Err() <-chan error
	Close() error
}

type userspaceBackend struct{ dp *dataplane.Dataplane }

func (b userspaceBackend) Name() string { return config.BackendUserspace }
func (b userspaceBackend) SetPeers(ps []config.Peer, learned []routes.Peer) error {
	owned := map[netip.Prefix]bool{}
	for _, l := range learned {
		for _, p := range l.Prefixes {
			owned[p.Masked()] = true
		}
	}
	return b.dp.SetPeersRouted(dataplane.PeersOf(ps), owned)
}
func (b userspaceBackend) Err() <-chan error { return b.dp.Err() }
func (b userspaceBackend) Close() error      { return b.dp.Close() }

type kernelBackend struct{ l *kernel.Link }

func (b kernelBackend) Name() string                                     { return config.BackendKernel }
func (b kernelBackend) SetPeers(ps []config.Peer, _ []routes.Peer) error { return b.l.SetPeers(ps) }
func (b kernelBackend) Err() <-chan error                                { return nil }
func (b kernelBackend) Close() error                                     { return b.l.Close() }

// openBackend resolves backend: auto|kernel|userspace against this kernel
// and starts the chosen one with the configured static peers.
func openBackend(cfg *config.Config, log *slog.Logger) (backend, *dataplane.Dataplane, error) {
	useKernel, err := kernel.Use(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("backend %s: %w", cfg.Backend, err)
	}
	if useKernel {
		l, err := kernel.Apply(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("kernel backend: %w", err)
		}
		log.Info("backend chosen", "backend", "kernel", "configured", cfg.Backend, "encap", cfg.Encap.Type)
		return kernelBackend{l}, nil, nil
	}
	if cfg.Backend == config.BackendAuto {
		log.Info("backend chosen", "backend", "userspace", "configured", cfg.Backend, "encap", cfg.Encap.Type,
			"why", "the kernel cannot create this link type")
	}
	dp, err := dataplane.Open(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	dp.Start()
	return userspaceBackend{dp}, dp, nil
}
