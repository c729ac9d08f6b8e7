package dataplane

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"tunnelplane/dataplane/bpfpath"
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
// goroutines and the parts it was given (device queues, sockets); Close is
// the single place that stops them.
type Dataplane struct {
	cfg        *config.Config
	log        *slog.Logger
	queues     []*queueSet
	parts      Parts // closed and undone by Close
	bufs       *buffers
	tunnel     *tunnel
	dport      uint16 // underlay destination port (0 for raw IP)
	table      atomic.Pointer[Table]
	gso        atomic.Bool    // send runs of datagrams with UDP_SEGMENT
	ctl        sync.Mutex     // control path only (SetPeers); never taken per packet
	routes     []netip.Prefix // routes this data plane added, sorted (syncRoutes)
	direct     bool           // run to completion: no writer goroutines, no rings
	answers    bool           // the queues have second readers (devreader.go)
	tosInherit bool           // outer TOS/traffic class from the inner packet, per packet
	// The device queues have the virtio header (GSO writes; devUSO: UDP
	// too; partial.go).
	devGSO, devUSO bool
	tgso           *tunnelGSO  // the UDP-tunnel GSO TAP, or nil (tnlgso.go)
	pkt            *packetSend // the packet-socket send path, or nil (pktsend.go)
	hops           *nextHops   // next hops for either, or nil (nexthop.go)
	start          time.Time

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	errc      chan error
}

// Parts are what a data plane forwards between, opened by its owner and
// handed to New (Open opens the real ones for a config). From New on they
// belong to the data plane: Close closes them, and New does on an error.
type Parts struct {
	// Devices are the queues of the overlay device, one pipeline each.
	// All are queues of one device: the first says which offloads they
	// take (device.Offloads).
	Devices []device.Device
	// Underlay is the sockets: Queues[i] serves Devices[i]; its Closers
	// are closed before the devices.
	Underlay underlay.Sockets
	// Network is the routes and path-MTU side. Nil leaves routes alone
	// and takes the configured underlay MTU as every peer's path MTU.
	Network Network
	// TunnelTAP, when set, sends TCP super-packets whole (tnlgso.go); it
	// needs device queues with device.SuperReader, and a Network that
	// resolves next hops, and is closed (unused) without them.
	TunnelTAP *TunnelTAP
	// PacketSend, when set, sends raw-IP tunnel packets through packet
	// sockets (pktsend.go); like TunnelTAP it needs a Network that
	// resolves next hops.
	PacketSend *PacketSend
	// KernelPath, when set, is the in-kernel fast path (bpfpath): the
	// data plane keeps its peer maps in step with the table and detaches
	// it first on Close.
	KernelPath *bpfpath.Path
	// Undo, when set, runs last in Close: it removes what opening the
	// parts added to the system (addresses on a device that existed).
	Undo func()
}

// Network is the data plane's network-config side (netcfg over netlink
// for a real device), used only on the control path (SetPeers).
type Network interface {
	// PathMTUs sets mtus[i] to the path MTU toward remotes[i], at most
	// limit; len(mtus) >= len(remotes). It is called once per change, for
	// the peers that change added.
	PathMTUs(remotes []netip.Addr, limit int, mtus []int)
	// SyncRoutes points the prefixes of want (in any order, duplicates
	// allowed; it may reorder want) through the device and removes those
	// of had (what the last call returned) that want no longer has. It
	// returns the routes of ours now present, also on an error.
	SyncRoutes(want, had []netip.Prefix) ([]netip.Prefix, error)
}

// New builds a data plane for cfg over parts, with the peer table of
// cfg's peers. It does not forward until Start.
func New(cfg *config.Config, parts Parts, log *slog.Logger) (*Dataplane, error) {
	if log == nil {
		log = slog.Default()
	}
	d := &Dataplane{
		cfg:    cfg,
		log:    log,
		parts:  parts,
		tunnel: newTunnel(cfg),
		done:   make(chan struct{}),
		errc:   make(chan error, 4),
		start:  time.Now(),
	}
	n := len(parts.Devices)
	if n == 0 || len(parts.Underlay.Queues) != n {
		d.Close()
		return nil, fmt.Errorf("dataplane: %d device queues and %d underlay queues (want as many, at least one)", n, len(parts.Underlay.Queues))
	}
	d.direct = cfg.Pipeline != "rings"
	d.tosInherit = cfg.Encap.TOS < 0
	d.bufs = newBuffers(max(cfg.Underlay.MTU, cfg.Device.MTU+encap.EthernetLen) + 64)
	for i, dev := range parts.Devices {
		d.queues = append(d.queues, &queueSet{
			id:              i,
			dev:             dev,
			recv:            parts.Underlay.Queues[i].Recv,
			send:            parts.Underlay.Queues[i].Send,
			underlayHandoff: newHandoff(ring.NewMPMC[packet](ringSize)),
			deviceHandoff:   newHandoff(ring.NewSPSC[packet](rxRingSize)),
		})
		if d.direct && cfg.InlineAnswers {
			if view, ok := device.Share(dev); ok {
				d.queues[i].answer = &answerer{view: view}
			}
		}
	}
	if d.tunnel.rawProto() == 0 {
		d.dport = cfg.Encap.Port
	}
	d.gso.Store(parts.Underlay.GSO)
	d.devGSO, d.devUSO = device.Offloads(parts.Devices[0])
	res, resolves := parts.Network.(hopResolver)
	if t := parts.TunnelTAP; t != nil {
		_, sr := parts.Devices[0].(device.SuperReader)
		if resolves && sr && t.TAP.Queues() >= n && (d.tunnel.kind == config.EncapVXLAN || d.tunnel.kind == config.EncapIPUDP) && cfg.Underlay.Local.Is4() {
			d.hops = newNextHops(t.Link, res)
			d.tgso = newTunnelGSO(cfg, t, d.hops, d.queues)
		} else {
			log.Warn("UDP-tunnel GSO TAP not used: the device, network or encapsulation cannot feed it", "tap", t.TAP.Name())
		}
	}
	if ps := parts.PacketSend; ps != nil {
		if resolves && len(ps.Queues) >= n && d.tunnel.rawProto() != 0 && cfg.Underlay.Local.Is4() {
			d.hops = newNextHops(ps.Link, res)
			d.pkt = newPacketSend(cfg, ps)
		} else {
			log.Warn("packet sockets not used: the network or encapsulation cannot feed them")
		}
	}
	if err := d.SetPeers(PeersFromConfig(cfg)); err != nil {
		d.Close()
		return nil, err
	}
	log.Info("data plane ready", "queues", n, "pipeline", cfg.Pipeline, "udp_gso", d.gso.Load(), "tunnel_gso", d.tgso != nil, "packet_send", d.pkt != nil, "kernel_path", parts.KernelPath != nil)
	return d, nil
}

// closeParts closes the sockets, then the device queues.
func (d *Dataplane) closeParts() {
	if kp := d.parts.KernelPath; kp != nil {
		if err := kp.Close(); err != nil {
			d.log.Warn("kernel path: detach", "err", err)
		}
	}
	for _, c := range d.parts.Underlay.Closers {
		c.Close()
	}
	if t := d.parts.TunnelTAP; t != nil {
		t.TAP.Close()
	}
	if ps := d.parts.PacketSend; ps != nil {
		for _, c := range ps.Closers {
			c.Close()
		}
	}
	for _, dev := range d.parts.Devices {
		dev.Close()
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
