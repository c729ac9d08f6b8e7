package dataplane

import (
	"net/netip"

	"tunnelplane/dataplane/stats"
)

// setPeers is SetPeersRouted with d.ctl held. A change costs what it
// changes: a peer whose remote the current table already has keeps its
// counters and its path MTU (no lookup), the new ones are looked up in
// one Network.PathMTUs call, and only routes that are new or gone are
// written to the kernel. The snapshot itself is rebuilt in memory, which
// is cheap next to a system call per peer.
func (d *Dataplane) setPeers(peers []*Peer, routesOwned map[netip.Prefix]bool) error {
	old := d.table.Load()
	var added []*Peer
	for _, p := range peers {
		if old != nil {
			if op := old.PeerByRemote(p.Remote); op != nil {
				p.stats, p.pathMTU, p.offUnderlay = op.stats, op.pathMTU, op.offUnderlay
				continue
			}
		}
		p.stats, p.pathMTU = new(stats.PeerStats), d.cfg.Underlay.MTU
		added = append(added, p)
	}
	d.lookUpPaths(added)
	d.table.Store(NewTable(peers))
	d.syncKernelPath(peers)
	var err error
	d.routes, err = d.syncRoutes(peers, routesOwned)
	return err
}

// lookUpPaths sets the path MTU of peers (none of them in a live table)
// from the Network, one PathMTUs call, and with the kernel path attached
// whether their routes leave by its underlay (routeKernelPath).
func (d *Dataplane) lookUpPaths(peers []*Peer) {
	if nw := d.parts.Network; nw != nil && len(peers) > 0 {
		remotes, mtus := make([]netip.Addr, len(peers)), make([]int, len(peers))
		for i, p := range peers {
			remotes[i] = p.Remote
		}
		nw.PathMTUs(remotes, d.cfg.Underlay.MTU, mtus)
		for i, p := range peers {
			p.pathMTU = mtus[i]
		}
	}
	d.routeKernelPath(peers)
}

// syncRoutes points the peers' prefixes that the device's own subnets do
// not already cover, and that no routing daemon owns (owned), at the
// device, and removes the routes it added before (d.routes) for prefixes
// no peer has any more (Network.SyncRoutes). Without a Network there are
// no routes to keep.
func (d *Dataplane) syncRoutes(peers []*Peer, owned map[netip.Prefix]bool) ([]netip.Prefix, error) {
	nw := d.parts.Network
	if nw == nil {
		return nil, nil
	}
	want := make([]netip.Prefix, 0, len(d.routes)+8)
	for _, p := range peers {
		for _, pfx := range p.Prefixes {
			pfx = pfx.Masked()
			if !d.coveredByDevice(pfx) && !owned[pfx] {
				want = append(want, pfx)
			}
		}
	}
	return nw.SyncRoutes(want, d.routes)
}

// coveredByDevice reports whether one of the device's own subnets holds
// pfx (the kernel routes those already).
func (d *Dataplane) coveredByDevice(pfx netip.Prefix) bool {
	for _, a := range d.cfg.Device.Addresses {
		if a.Bits() <= pfx.Bits() && a.Masked().Contains(pfx.Addr()) {
			return true
		}
	}
	return false
}
