package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/flannel"
)

// flannelMember is a node's membership with either subnet manager.
type flannelMember interface {
	Network() flannel.NetworkConfig
	Subnet() netip.Prefix
	Run(ctx context.Context, fn func([]config.Peer)) error
	Close() error
}

// flannelNode is tunneld as a flannel node (peers_from: flannel): the
// lease acquired before the device exists, then the watch that feeds the
// service loop with peer snapshots.
type flannelNode struct {
	m     flannelMember
	stats *flannel.Stats
	log   *slog.Logger
	peers chan []config.Peer // newest snapshot only
	errc  chan error
}

// joinFlannel acquires the node's lease (etcd) or reads its Node and
// publishes its annotations (kube), and gives the device the first
// address of its subnet as a /32, as flannel gives flannel.1. It returns
// nil without peers_from: flannel. SIGINT and SIGTERM end a wait for etcd
// or the API server.
func joinFlannel(cfg *config.Config, log *slog.Logger) (*flannelNode, error) {
	if cfg.PeersFrom != config.PeersFromFlannel {
		return nil, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st := new(flannel.Stats)
	opt := flannel.Options{
		Endpoints: cfg.Flannel.EtcdEndpoints,
		Prefix:    cfg.Flannel.EtcdPrefix,
		PublicIP:  cfg.Underlay.Local,
		Backend:   config.FlannelBackend(cfg.Encap.Type),
		VNI:       int(cfg.Encap.VNI),
		Port:      int(cfg.Encap.Port),
		VtepMAC:   cfg.Device.MAC,
		Log:       log,
		Stats:     st,
	}
	var m flannelMember
	switch cfg.Flannel.SubnetManager {
	case config.SubnetManagerKube:
		opt.Endpoints, opt.Prefix = nil, ""
		opt.Kubeconfig, opt.NodeName, opt.NetConfPath = cfg.Flannel.Kubeconfig, cfg.Flannel.NodeName, cfg.Flannel.NetConf
		if opt.NodeName == "" {
			opt.NodeName = os.Getenv("NODE_NAME")
		}
		opt.VtepMACSet = cfg.Device.MACSet
		// client-go logs through klog: into tunneld's log, not stderr.
		klog.SetSlogLogger(log.With("component", "client-go"))
		km, err := flannel.JoinKube(ctx, opt)
		if err != nil {
			return nil, err
		}
		cfg.Device.MAC = km.VtepMAC()
		m = km
	default:
		em, err := flannel.Join(ctx, opt)
		if err != nil {
			return nil, err
		}
		m = em
	}
	cfg.Device.Addresses = []netip.Prefix{netip.PrefixFrom(m.Subnet().Addr(), 32)}
	return &flannelNode{m: m, stats: st, log: log, peers: make(chan []config.Peer, 1), errc: make(chan error, 1)}, nil
}

// setUp runs once the device exists: the route for the whole network
// through it, and subnet.env for flannel's CNI plugin.
func (n *flannelNode) setUp(cfg *config.Config) error {
	nc := n.m.Network()
	if err := flannel.EnsureNetworkRoute(cfg.Device.Name, nc.Network); err != nil {
		return err
	}
	env := flannel.SubnetEnv(nc.Network, n.m.Subnet(), cfg.Device.MTU, false)
	if err := flannel.WriteSubnetFile(cfg.Flannel.SubnetFile, env); err != nil {
		return err
	}
	n.log.Info("flannel node ready", "subnet", n.m.Subnet(), "network", nc.Network, "device_address", cfg.Device.Addresses[0],
		"subnet_file", cfg.Flannel.SubnetFile)
	return nil
}

// run watches the leases until ctx is done; a fatal error goes to errc.
func (n *flannelNode) run(ctx context.Context) {
	err := n.m.Run(ctx, func(ps []config.Peer) {
		select { // keep only the newest snapshot
		case <-n.peers:
		default:
		}
		n.peers <- ps
	})
	if err != nil {
		n.errc <- fmt.Errorf("flannel: %w", err)
	}
}

func (n *flannelNode) close() { n.m.Close() }

// flannelPeers and flannelErr are the node's channels, nil (never ready in
// a select) without peers_from: flannel.
func (d *service) flannelPeers() <-chan []config.Peer {
	if d.fl == nil {
		return nil
	}
	return d.fl.peers
}

func (d *service) flannelErr() <-chan error {
	if d.fl == nil {
		return nil
	}
	return d.fl.errc
}
