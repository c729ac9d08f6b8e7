package dataplane

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"tunnelplane/dataplane/config"
	"tunnelplane/encap"
	"tunnelplane/ring"
)

// Headroom is the space kept in front of every packet for the outer headers
// and the TUN's virtio-net header.
const Headroom = ring.Headroom

const ringSize = 1024

// Dataplane forwards between one device and one underlay socket. It owns
// its goroutines, its device and its socket; Close is the single place that
// stops them.
type Dataplane struct {
	cfg       *config.Config
	log       *slog.Logger
	dev       Device
	undoDev   func()
	sock      io.Closer
	conn      *BatchConn
	bufs      *buffers
	tun       *tunnel
	dport     uint16 // underlay destination port (0 for raw IP)
	table     atomic.Pointer[Table]
	gso       atomic.Bool // send runs of datagrams with UDP_SEGMENT
	ctl       sync.Mutex  // control path only (SetPeers); never taken per packet
	peerStats map[netip.Addr]*PeerStats
	routes    map[netip.Prefix]bool // routes this data plane added
	direct    bool                  // run to completion: no writer goroutines, no rings
	txq       *queue                // encapsulated packets and neighbour replies -> underlay writer
	rxq       *queue                // decapsulated packets -> device writer
	start     time.Time

	egress, uwriter, ureader, dwriter Counters

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	errc      chan error
}

// New opens the device and the underlay socket described by cfg and builds
// the peer table. It does not forward until Start.
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
		txq:   newQueue(ring.NewMPMC[packet](ringSize)),
		rxq:   newQueue(ring.NewSPSC[packet](ringSize)),
	}
	d.direct = cfg.Pipeline != "rings"
	d.bufs = newBuffers(max(cfg.Underlay.MTU, cfg.Device.MTU+encap.EthernetLen) + 64)

	sock, conn, port, err := openUnderlay(cfg, d.tun)
	if err != nil {
		return nil, err
	}
	d.sock, d.conn, d.dport = sock, conn, port
	if d.tun.rawProto() == 0 && cfg.Offload != "off" {
		d.gso.Store(conn.SupportsGSO())
		if err := conn.EnableGRO(); err != nil {
			log.Info("UDP GRO not available", "err", err)
		}
	}

	dev, undo, err := openDevice(cfg)
	if err != nil {
		sock.Close()
		return nil, err
	}
	d.dev, d.undoDev = dev, undo
	if td, ok := dev.(tun.Device); ok {
		go func() { // wireguard-go's tun reports link events; nobody here needs them
			for range td.Events() {
			}
		}()
	}
	if err := d.SetPeers(PeersFromConfig(cfg)); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// PeersFromConfig turns the configured peers into table entries.
func PeersFromConfig(cfg *config.Config) []*Peer {
	peers := make([]*Peer, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		peers = append(peers, &Peer{Remote: p.Remote, Prefixes: p.Prefixes, MAC: p.MAC, StaticMAC: p.MACSet})
	}
	return peers
}

// SetPeers installs a new peer table snapshot and routes for its prefixes.
// A peer whose remote address was already known keeps its counters.
func (d *Dataplane) SetPeers(peers []*Peer) error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if d.peerStats == nil {
		d.peerStats = map[netip.Addr]*PeerStats{}
	}
	keep := make(map[netip.Addr]*PeerStats, len(peers))
	for _, p := range peers {
		st := d.peerStats[p.Remote]
		if st == nil {
			st = new(PeerStats)
		}
		p.stats = st
		keep[p.Remote] = st
	}
	d.peerStats = keep
	d.table.Store(NewTable(peers))
	var err error
	d.routes, err = syncRoutes(d.cfg, peers, d.routes)
	return err
}

// Table returns the current peer table snapshot.
func (d *Dataplane) Table() *Table { return d.table.Load() }

// openUnderlay opens the socket the tunnel runs over: UDP for VXLAN and
// IP-in-UDP, a raw IP socket of the tunnel's protocol otherwise.
func openUnderlay(cfg *config.Config, t *tunnel) (io.Closer, *BatchConn, uint16, error) {
	local := cfg.Underlay.Local
	family := "4"
	if local.Is6() {
		family = "6"
	}
	var (
		sock interface {
			io.Closer
			syscall.Conn
		}
		port uint16
		err  error
	)
	proto := t.rawProto()
	if proto != 0 {
		sock, err = net.ListenIP(fmt.Sprintf("ip%s:%d", family, proto), &net.IPAddr{IP: local.AsSlice()})
	} else {
		port = cfg.Encap.Port
		sock, err = net.ListenUDP("udp"+family, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, port)))
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("underlay socket on %s: %w", local, err)
	}
	conn, err := NewBatchConn(sock, 128, proto != 0)
	if err == nil {
		err = setUnderlayOptions(sock, cfg)
	}
	if err != nil {
		sock.Close()
		return nil, nil, 0, err
	}
	return sock, conn, port, nil
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
