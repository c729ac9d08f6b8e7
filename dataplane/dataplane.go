package dataplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/stats"
	"tunnelplane/encap"
	"tunnelplane/ring"
)

// Headroom is the space kept in front of every packet for the outer headers
// and the TUN's virtio-net header.
const Headroom = ring.Headroom

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

// queueSet is one device queue and the sockets its goroutines use. Every
// goroutine of a queue counts into the queue's own Counters.
type queueSet struct {
	id   int
	dev  device.Device
	recv underlayReader // underlay socket this queue reads; nil if another queue reads for it
	send underlaySender // underlay socket this queue's egress sends through
	txq  *queue         // pipeline rings: encapsulated packets and replies -> underlay writer
	rxq  *queue         // pipeline rings: decapsulated packets -> device writer

	icmps []packet     // egress: ICMP errors for the device, built during a batch
	split splitScratch // ingress: software split of super-packets

	egress, uwriter, ureader, dwriter stats.Counters
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
			id:    i,
			txq:   newQueue(ring.NewMPMC[packet](ringSize)),
			rxq:   newQueue(ring.NewSPSC[packet](rxRingSize)),
			split: newSplitScratch(),
		})
	}
	if err := d.openUnderlay(); err != nil {
		d.closeAll()
		return nil, err
	}
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

// openUnderlay opens the sockets the tunnel runs over.
//
// UDP (VXLAN, IP-in-UDP): one receiving socket per queue on the tunnel
// port, joined by SO_REUSEPORT, so the kernel spreads incoming flows over
// the queues by their 4-tuple hash. With more than one queue, each queue
// also sends from a socket of its own on an ephemeral port: the TUN hands a
// flow always to the same queue, so each flow keeps one source port, while
// different queues give the peer different source ports to spread on (RFC
// 7348's source-port entropy, at queue granularity).
//
// Raw IP (IPIP, SIT, GRE): a raw socket receives a copy of every packet of
// its protocol, so there is one socket, read by queue 0; every queue sends
// through a socket of its own that receives nothing (sendSocket).
func (d *Dataplane) openUnderlay() error {
	cfg := d.cfg
	local := cfg.Underlay.Local
	family := "4"
	if local.Is6() {
		family = "6"
	}
	type sock interface {
		io.Closer
		syscall.Conn
	}
	// batchConn takes an open socket over: closed with the data plane,
	// outer header options set, batched I/O.
	batchConn := func(s sock) (*BatchConn, error) {
		d.closers = append(d.closers, s)
		if err := setUnderlayOptions(s, cfg); err != nil {
			return nil, err
		}
		c, err := NewBatchConn(s, 128, d.tun.rawProto() != 0)
		if c != nil {
			c.v6 = local.Is6()
		}
		return c, err
	}
	open := func(reuse bool, port uint16) (*BatchConn, error) {
		var (
			s   sock
			err error
		)
		lc := net.ListenConfig{}
		if reuse {
			lc.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
				return serr
			}
		}
		if proto := d.tun.rawProto(); proto != 0 {
			var pc net.PacketConn
			pc, err = lc.ListenPacket(context.Background(), fmt.Sprintf("ip%s:%d", family, proto), local.String())
			if err == nil {
				s = pc.(*net.IPConn)
			}
		} else {
			var pc net.PacketConn
			pc, err = lc.ListenPacket(context.Background(), "udp"+family, netip.AddrPortFrom(local, port).String())
			if err == nil {
				s = pc.(*net.UDPConn)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("underlay socket on %s: %w", local, err)
		}
		return batchConn(s)
	}
	// Sending goes through sockets of its own, outside the netpoller
	// (sendSocket says why).
	openSend := func() (*BatchConn, error) {
		f, err := sendSocket(local, int(d.tun.rawProto()))
		if err != nil {
			return nil, err
		}
		return batchConn(f)
	}
	if d.tun.rawProto() != 0 {
		c, err := open(false, 0)
		if err != nil {
			return err
		}
		d.queues[0].recv = c
		for _, q := range d.queues {
			if q.send, err = openSend(); err != nil {
				return err
			}
		}
		return nil
	}
	d.dport = cfg.Encap.Port
	offload := cfg.Offload != "off"
	var first *BatchConn
	for _, q := range d.queues {
		c, err := open(len(d.queues) > 1, d.dport)
		if err != nil {
			return err
		}
		q.recv, q.send = c, c
		if offload {
			if err := c.EnableGRO(); err != nil {
				d.log.Info("UDP GRO not available", "err", err)
			}
		}
		if len(d.queues) > 1 {
			if c, err = openSend(); err != nil {
				return err
			}
			q.send = c
		}
		if first == nil {
			first = c
		}
	}
	if offload {
		d.gso.Store(first.SupportsGSO())
	}
	return nil
}

// setUnderlayOptions applies the outer TTL, TOS and DF choices and larger
// socket buffers. The kernel builds the outer IP header, so these are
// socket options rather than header fields.
func setUnderlayOptions(sock syscall.Conn, cfg *config.Config) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	v6 := cfg.Underlay.Local.Is6()
	var serr error
	set := func(level, opt, v int) {
		if serr == nil {
			rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) })
		}
	}
	// Best effort: without CAP_NET_ADMIN the kernel caps these at rmem_max.
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	})
	if v6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, int(cfg.Encap.TTL))
		if cfg.Encap.TOS >= 0 {
			set(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, cfg.Encap.TOS)
		}
	} else {
		set(unix.IPPROTO_IP, unix.IP_TTL, int(cfg.Encap.TTL))
		if cfg.Encap.TOS >= 0 {
			set(unix.IPPROTO_IP, unix.IP_TOS, cfg.Encap.TOS)
		}
		switch cfg.Encap.DF {
		case 1:
			set(unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		case 0:
			set(unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		}
	}
	if serr != nil {
		return fmt.Errorf("underlay socket options: %w", serr)
	}
	return nil
}
