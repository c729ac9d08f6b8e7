package dataplane

import (
	"fmt"
	"net"
	"net/netip"

	"tunnelplane/dataplane/bpfpath"
	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/netcfg"
)

// openKernelPath loads and attaches the in-kernel fast path for cfg's
// tunnel on the device and the device of the underlay address. It carries
// nothing until setPeers gives it the peers.
func openKernelPath(cfg *config.Config, devs []device.Device) (*bpfpath.Path, error) {
	if why := cfg.KernelPathUnfit(); why != "" {
		return nil, fmt.Errorf("underlay.kernel_path %s", why)
	}
	name, err := devs[0].Name()
	if err != nil {
		return nil, err
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	link, err := netcfg.LinkOfAddr(cfg.Underlay.Local)
	if err != nil {
		return nil, err
	}
	e := map[config.EncapType]bpfpath.Encap{config.EncapIPIP: bpfpath.IPIP, config.EncapGRE: bpfpath.GRE, config.EncapVXLAN: bpfpath.VXLAN}[cfg.Encap.Type]
	return bpfpath.Attach(bpfpath.Config{
		Encap:    e,
		Local:    cfg.Underlay.Local,
		VNI:      cfg.Encap.VNI,
		Port:     cfg.Encap.Port,
		LocalMAC: cfg.Device.MAC,
		TTL:      cfg.Encap.TTL,
		TOS:      cfg.Encap.TOS,
		DF:       cfg.Encap.DF,
		Device:   ifc.Index,
		Underlay: link.Index,
		MaxPeers: 2 * maxKernelPathPrefixes,
	})
}

// maxKernelPathPrefixes bounds what the fast path carries; prefixes past
// it stay with the user-space path. The maps hold twice as many, because
// SetPeers writes new entries before it deletes the old: a full table
// replaced by another full one must fit.
const maxKernelPathPrefixes = 1 << 17

// kernelPathPeers is what the fast path carries of a table: every IPv4
// prefix of every peer whose path MTU is the underlay's. A peer with a
// smaller path MTU stays with the user-space path, which answers packets
// too big for it (pmtu.go); the programs do not.
func (d *Dataplane) kernelPathPeers(peers []*Peer) (kp []bpfpath.Peer, left int) {
	for _, p := range peers {
		for _, pfx := range p.Prefixes {
			if p.pathMTU != 0 && p.pathMTU < d.cfg.Underlay.MTU || p.offUnderlay || !pfx.Addr().Is4() || !p.Remote.Is4() || len(kp) == maxKernelPathPrefixes {
				left++
				continue
			}
			kp = append(kp, bpfpath.Peer{Prefix: pfx, Remote: p.Remote, MAC: p.MAC})
		}
	}
	return kp, left
}

// routeKernelPath marks the added peers whose route leaves by another
// device than the fast path's underlay (a multi-homed node): the encap
// program sends only by that device, so those stay with the user-space
// path. One route lookup per new peer, none for the ones kept.
func (d *Dataplane) routeKernelPath(added []*Peer) {
	kp := d.parts.KernelPath
	if kp == nil || len(added) == 0 {
		return
	}
	remotes, ok := make([]netip.Addr, len(added)), make([]bool, len(added))
	for i, p := range added {
		remotes[i] = p.Remote
	}
	if err := netcfg.RoutesVia(remotes, kp.Underlay(), ok); err != nil {
		d.log.Warn("kernel path: routes toward new peers not checked; they stay with the user-space path", "err", err)
	}
	off := 0
	for i, p := range added {
		if p.offUnderlay = !ok[i]; p.offUnderlay {
			off++
		}
	}
	if off > 0 {
		d.log.Info("kernel path: peers routed by another device stay with the user-space path", "peers", off)
	}
}

// syncKernelPath gives the fast path the table's peers. A failure is
// logged and leaves the path with what it had: the user-space path
// carries what the maps miss.
func (d *Dataplane) syncKernelPath(peers []*Peer) {
	kp := d.parts.KernelPath
	if kp == nil {
		return
	}
	want, left := d.kernelPathPeers(peers)
	skipped, err := kp.SetPeers(want)
	if err != nil {
		d.log.Warn("kernel path: peers not all written; the user-space path carries the rest", "err", err)
	}
	if left+skipped > 0 {
		d.log.Info("kernel path: prefixes left to the user-space path", "prefixes", left+skipped, "carried", len(want)-skipped)
	}
}

// KernelPathCounters returns the fast path's counts by bpfpath.Reason;
// ok is false when the path is not attached.
func (d *Dataplane) KernelPathCounters() (c [bpfpath.NumReasons]uint64, ok bool, err error) {
	kp := d.parts.KernelPath
	if kp == nil {
		return c, false, nil
	}
	c, err = kp.Counters()
	return c, true, err
}
