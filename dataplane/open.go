package dataplane

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/netcfg"
	"tunnelplane/dataplane/underlay"
)

// RouteProtocol marks the routes tunneld adds (netcfg.RouteProtocol).
const RouteProtocol = netcfg.RouteProtocol

// Open opens the real parts cfg describes and builds a data plane over
// them (New): the underlay sockets (underlay.Open), the device with its
// queues (device.Open), brought up with its addresses and MTU
// (netcfg.Configure), and netcfg for routes and path MTU. Where the
// platform has none of these, it says "not supported".
func Open(cfg *config.Config, log *slog.Logger) (*Dataplane, error) {
	if log == nil {
		log = slog.Default()
	}
	parts, err := openParts(cfg, log)
	if err != nil {
		return nil, err
	}
	return New(cfg, parts, log)
}

// openParts opens what Open hands to New. On an error it closes what it
// opened.
func openParts(cfg *config.Config, log *slog.Logger) (Parts, error) {
	n := cfg.Queues
	if n <= 0 {
		n = runtime.NumCPU()
	}
	t := newTunnel(cfg)
	socks, err := underlay.Open(underlay.Options{
		Local:    cfg.Underlay.Local,
		RawProto: t.rawProto(),
		Port:     cfg.Encap.Port,
		Offload:  cfg.Offload != "off",
		TTL:      cfg.Encap.TTL,
		TOS:      cfg.Encap.TOS,
		DF:       cfg.Encap.DF,
		Batch:    128,
		InnerL3:  t.innerL3(),
	}, n, log)
	if err != nil {
		return Parts{}, err
	}
	devs, undo, err := openDevice(cfg, n)
	if err != nil {
		for _, c := range socks.Closers {
			c.Close()
		}
		return Parts{}, err
	}
	parts := Parts{Devices: devs, Underlay: *socks, Network: deviceNetwork(cfg.Device.Name), Undo: undo}
	if g := cfg.Underlay.TunnelGSO; g == config.TunnelGSOAuto || g == config.TunnelGSOOn {
		t, err := openTunnelTAP(cfg, devs)
		switch {
		case err == nil:
			parts.TunnelTAP = t
			log.Info("UDP-tunnel GSO TAP: TCP super-packets leave whole", "tap", t.TAP.Name(), "via", t.Link.Name)
		case g == config.TunnelGSOOn:
			closeAll(parts)
			return Parts{}, err
		default:
			log.Info("UDP-tunnel GSO TAP not used; super-packets are split and sent by the sockets", "err", err)
		}
	}
	if cfg.Underlay.RawSend == config.RawSendPacket {
		ps, err := openPacketSend(cfg, n)
		if err != nil {
			closeAll(parts)
			return Parts{}, err
		}
		parts.PacketSend = ps
		log.Info("packet sockets send the raw-IP tunnel's packets", "via", ps.Link.Name)
	}
	if k := cfg.Underlay.KernelPath; k == config.KernelPathAuto || k == config.KernelPathOn {
		kp, err := openKernelPath(cfg, devs)
		switch {
		case err == nil:
			parts.KernelPath = kp
			log.Info("kernel path attached: the kernel encapsulates and decapsulates the peers' IPv4 traffic; tunneld carries the rest")
			// With UDP GRO on our sockets the kernel would coalesce the
			// peers' VXLAN datagrams into batches before the decap
			// program sees them, and it leaves batches to the sockets.
			for _, q := range socks.Queues {
				if g, ok := q.Recv.(interface{ SetGRO(bool) error }); ok {
					if err := g.SetGRO(false); err != nil {
						log.Warn("kernel path: UDP GRO stays on; coalesced datagrams go the user-space way", "err", err)
					}
				}
			}
		case k == config.KernelPathOn:
			closeAll(parts)
			return Parts{}, err
		default:
			log.Warn("kernel path not used; the user-space path carries everything", "err", err)
		}
	}
	return parts, nil
}

// openPacketSend opens a packet socket per device queue on the device of
// the underlay address.
func openPacketSend(cfg *config.Config, n int) (*PacketSend, error) {
	if !cfg.Underlay.Local.Is4() {
		return nil, errors.New("underlay.raw_send: packet needs an IPv4 underlay")
	}
	link, err := netcfg.LinkOfAddr(cfg.Underlay.Local)
	if err != nil {
		return nil, err
	}
	qs, closers, err := underlay.OpenPacketSend(link.Index, n, 128)
	if err != nil {
		return nil, err
	}
	return &PacketSend{Queues: qs, Link: link, Closers: closers}, nil
}

// openTunnelTAP opens the UDP-tunnel GSO TAP with a queue per device
// queue and points it at the device of the underlay address.
func openTunnelTAP(cfg *config.Config, devs []device.Device) (*TunnelTAP, error) {
	if _, ok := devs[0].(device.SuperReader); !ok || (cfg.Encap.Type != config.EncapVXLAN && cfg.Encap.Type != config.EncapIPUDP) || !cfg.Underlay.Local.Is4() {
		return nil, errors.New("underlay.tunnel_gso needs VXLAN or IP-in-UDP over IPv4 and a device with offloads (the virtio header)")
	}
	link, err := netcfg.LinkOfAddr(cfg.Underlay.Local)
	if err != nil {
		return nil, err
	}
	tap, err := underlay.OpenTunnelTAP("tpgso%d", len(devs))
	if err != nil {
		return nil, err
	}
	if err := netcfg.RedirectTAP(tap.Name(), link.Index); err != nil {
		tap.Close()
		return nil, err
	}
	return &TunnelTAP{TAP: tap, Link: link}, nil
}

// closeAll closes opened parts that no data plane owns yet.
func closeAll(p Parts) {
	for _, c := range p.Underlay.Closers {
		c.Close()
	}
	if p.TunnelTAP != nil {
		p.TunnelTAP.TAP.Close()
	}
	if ps := p.PacketSend; ps != nil {
		for _, c := range ps.Closers {
			c.Close()
		}
	}
	for _, d := range p.Devices {
		d.Close()
	}
	if p.Undo != nil {
		p.Undo()
	}
}

// openDevice opens the configured device with n queues (device.Open) and
// brings it up with its addresses and MTU (netcfg.Configure). The
// returned undo removes what this call added to a device that existed
// before; a device it created goes away when its queues close.
func openDevice(cfg *config.Config, n int) ([]device.Device, func(), error) {
	existed := netcfg.LinkExists(cfg.Device.Name)
	devs, err := device.Open(device.Config{
		Name:     cfg.Device.Name,
		TAP:      cfg.Device.Mode == config.ModeTAP,
		MTU:      cfg.Device.MTU,
		Offload:  cfg.Offload != "off",
		Fallback: cfg.Offload == "auto",
	}, n)
	if err != nil {
		return nil, nil, err
	}
	undo, err := netcfg.Configure(netcfg.Link{
		Name:      cfg.Device.Name,
		MTU:       cfg.Device.MTU,
		TAP:       cfg.Device.Mode == config.ModeTAP,
		MAC:       cfg.Device.MAC,
		Addresses: cfg.Device.Addresses,
	}, existed)
	if err != nil {
		for _, d := range devs {
			d.Close()
		}
		return nil, nil, err
	}
	return devs, undo, nil
}

// deviceNetwork is the Network of the device named so: netcfg over
// netlink.
type deviceNetwork string

var _ Network = deviceNetwork("")

// PathMTUs looks the remotes up over one netlink socket
// (netcfg.PathMTUs).
func (n deviceNetwork) PathMTUs(remotes []netip.Addr, limit int, mtus []int) {
	pm := netcfg.NewPathMTUs()
	defer pm.Close()
	for i, r := range remotes {
		mtus[i] = pm.Lookup(r, limit)
	}
}

// NextHops resolves next-hop MACs (netcfg.NextHops).
func (n deviceNetwork) NextHops(remotes []netip.Addr, via int, macs [][6]byte, ok []bool) error {
	return netcfg.NextHops(remotes, via, macs, ok)
}

// RouteChanges reports changes of the routes that do not leave by the
// device (netcfg.RouteChanges).
func (n deviceNetwork) RouteChanges(done <-chan struct{}) (<-chan struct{}, error) {
	ifc, err := net.InterfaceByName(string(n))
	if err != nil {
		return nil, err
	}
	return netcfg.RouteChanges(ifc.Index, done)
}

// SyncRoutes writes only the difference (netcfg.SyncRoutes).
func (n deviceNetwork) SyncRoutes(want, had []netip.Prefix) ([]netip.Prefix, error) {
	return netcfg.SyncRoutes(string(n), want, had)
}
