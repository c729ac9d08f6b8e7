package dataplane

import (
	"net/netip"

	"tunnelplane/dataplane/netcfg"
	"tunnelplane/dataplane/stats"
)

// setPeers is SetPeersRouted with d.ctl held. A change costs what it
// changes: a peer whose remote the current table already has keeps its
// counters and its path MTU (no netlink lookup), and only routes that are
// new or gone are written to the kernel. The snapshot itself is rebuilt in
// memory, which is cheap next to a system call per peer.
func (d *Dataplane) setPeers(peers []*Peer, routesOwned map[netip.Prefix]bool) error {
	old := d.table.Load()
	var pm *netcfg.PathMTUs // opened on the first new peer; one socket for all lookups
	defer func() {
		if pm != nil {
			pm.Close()
		}
	}()
	for _, p := range peers {
		if old != nil {
			if op := old.PeerByRemote(p.Remote); op != nil {
				p.stats, p.pathMTU = op.stats, op.pathMTU
				continue
			}
		}
		p.stats = new(stats.PeerStats)
		if pm == nil {
			pm = netcfg.NewPathMTUs()
		}
		p.pathMTU = pm.Lookup(p.Remote, d.cfg.Underlay.MTU)
	}
	d.table.Store(NewTable(peers))
	var err error
	d.routes, err = syncRoutes(d.cfg, peers, d.routes, routesOwned)
	return err
}
