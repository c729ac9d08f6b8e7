package dataplane

import (
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/encap"
	"tunnelplane/ring"
)

// Ring capacities. The ingress ring is smaller than the large-buffer pool
// (512): when the device writer lags, the reader should wait on a full ring
// (woken by the writer) before it runs the pool dry (where it can only poll).
const (
	ringSize   = 1024
	rxRingSize = 256
)

// Dataplane forwards between one device and the underlay. It owns its
// goroutines, its device queues and its sockets; Close is the single place
// that stops them.
type Dataplane struct {
	cfg        *config.Config
	log        *slog.Logger
	queues     []*queueSet
	undoDev    func()
	closers    []io.Closer // sockets and device queues, closed by Close
	bufs       *buffers
	tun        *tunnel
	dport      uint16 // underlay destination port (0 for raw IP)
	table      atomic.Pointer[Table]
	gso        atomic.Bool    // send runs of datagrams with UDP_SEGMENT
	ctl        sync.Mutex     // control path only (SetPeers); never taken per packet
	routes     []netip.Prefix // routes this data plane added, sorted (syncRoutes)
	direct     bool           // run to completion: no writer goroutines, no rings
	tosInherit bool           // outer TOS/traffic class from the inner packet, per packet
	// The device queues have the virtio header (GSO writes; devUSO: UDP
	// too; partial.go).
	devGSO, devUSO bool
	start          time.Time

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	errc      chan error
}

// New opens the device queues and the underlay sockets described by cfg
// and builds the peer table. It does not forward until Start.
func New(cfg *config.Config, log *slog.Logger) (*Dataplane, error) {
	if log == nil {
		log = slog.Default()
	}
	d := &Dataplane{
		cfg:   cfg,
		log:   log,
		tun:   newTunnel(cfg),
		done:  make(chan struct{}),
		errc:  make(chan error, 4),
		start: time.Now(),
	}
	d.direct = cfg.Pipeline != "rings"
	d.tosInherit = cfg.Encap.TOS < 0
	d.bufs = newBuffers(max(cfg.Underlay.MTU, cfg.Device.MTU+encap.EthernetLen) + 64)
	n := cfg.Queues
	if n <= 0 {
		n = runtime.NumCPU()
	}
	for i := range n {
		d.queues = append(d.queues, &queueSet{
			id:  i,
			txq: newQueue(ring.NewMPMC[packet](ringSize)),
			rxq: newQueue(ring.NewSPSC[packet](rxRingSize)),
		})
	}
	socks, err := underlay.Open(underlay.Options{
		Local:    cfg.Underlay.Local,
		RawProto: d.tun.rawProto(),
		Port:     cfg.Encap.Port,
		Offload:  cfg.Offload != "off",
		TTL:      cfg.Encap.TTL,
		TOS:      cfg.Encap.TOS,
		DF:       cfg.Encap.DF,
		Batch:    128,
	}, n, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, socks.Closers...)
	for i, q := range d.queues {
		q.recv, q.send = socks.Queues[i].Recv, socks.Queues[i].Send
	}
	if d.tun.rawProto() == 0 {
		d.dport = cfg.Encap.Port
	}
	d.gso.Store(socks.GSO)
	devs, undo, err := openDevice(cfg, n)
	if err != nil {
		d.closeAll()
		return nil, err
	}
	d.undoDev = undo
	d.devGSO, d.devUSO = device.Offloads(devs[0])
	for i, dev := range devs {
		d.queues[i].dev = dev
		d.closers = append(d.closers, dev)
	}
	if err := d.SetPeers(PeersFromConfig(cfg)); err != nil {
		d.Close()
		return nil, err
	}
	log.Info("data plane ready", "queues", n, "pipeline", cfg.Pipeline, "udp_gso", d.gso.Load())
	return d, nil
}

func (d *Dataplane) closeAll() {
	for _, c := range d.closers {
		c.Close()
	}
}

// PeersFromConfig turns the configured peers into table entries.
func PeersFromConfig(cfg *config.Config) []*Peer { return PeersOf(cfg.Peers) }

// PeersOf turns config peers (static or learned from routes) into table
// entries.
func PeersOf(ps []config.Peer) []*Peer {
	peers := make([]*Peer, 0, len(ps))
	for _, p := range ps {
		peers = append(peers, &Peer{Remote: p.Remote, Prefixes: p.Prefixes, MAC: p.MAC, StaticMAC: p.MACSet})
	}
	return peers
}

// SetPeers installs a new peer table snapshot and routes for its prefixes.
// A peer whose remote address was already known keeps its counters.
func (d *Dataplane) SetPeers(peers []*Peer) error { return d.SetPeersRouted(peers, nil) }

// SetPeersRouted is SetPeers for peers some of whose prefixes already have
// kernel routes through the device (learned from routes a routing daemon
// owns): routesOwned lists those, and the data plane leaves them alone.
func (d *Dataplane) SetPeersRouted(peers []*Peer, routesOwned map[netip.Prefix]bool) error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	return d.setPeers(peers, routesOwned)
}

// Table returns the current peer table snapshot.
func (d *Dataplane) Table() *Table { return d.table.Load() }
