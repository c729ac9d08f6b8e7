package dataplane

import (
	"net/netip"
	"time"

	"tunnelplane/dataplane/netcfg"
)

// What SetPeers looks up once per new peer, its path MTU and (with the
// kernel path attached) whether its route leaves by the underlay device,
// is looked up again for every peer after the kernel's routes change, so
// that a peer whose route moved is carried the way it now needs.

// routeChanger is what a Network offers to have peers followed when the
// routes toward them change (deviceNetwork: netcfg.RouteChanges).
type routeChanger interface {
	RouteChanges(done <-chan struct{}) (<-chan struct{}, error)
}

// rerouteSettle is how long a burst of route changes may go on before
// the peers are looked up again: a routing daemon writes many at once.
const rerouteSettle = 200 * time.Millisecond

// routineFollowRoutes re-checks the peers after each burst of changes
// until done.
func (d *Dataplane) routineFollowRoutes(changes <-chan struct{}) {
	defer d.wg.Done()
	for {
		select {
		case <-d.done:
			return
		case <-changes:
		}
		select {
		case <-d.done:
			return
		case <-time.After(rerouteSettle):
		}
		select { // what came in while settling is covered by this look
		case <-changes:
		default:
		}
		d.recheckRoutes()
	}
}

// recheckRoutes looks up every peer's path MTU and, with the kernel path,
// its device again, and when any changed swaps in a table of copies that
// carry the new values (the live peers are read by the forwarding
// goroutines and are not written) and gives the kernel path its peers.
func (d *Dataplane) recheckRoutes() {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	old := d.table.Load()
	nw := d.parts.Network
	if old == nil || nw == nil || len(old.Peers) == 0 {
		return
	}
	remotes := make([]netip.Addr, len(old.Peers))
	for i, p := range old.Peers {
		remotes[i] = p.Remote
	}
	mtus := make([]int, len(remotes))
	nw.PathMTUs(remotes, d.cfg.Underlay.MTU, mtus)
	via := make([]bool, len(remotes))
	kp := d.parts.KernelPath
	if kp != nil {
		if err := netcfg.RoutesVia(remotes, kp.Underlay(), via); err != nil {
			d.log.Warn("kernel path: routes toward the peers not checked again; the peers keep what they had", "err", err)
			kp = nil
		}
	}
	mtuMoved, devMoved := 0, 0
	for i, p := range old.Peers {
		if mtus[i] != p.pathMTU {
			mtuMoved++
		}
		if kp != nil && via[i] == p.offUnderlay {
			devMoved++
		}
	}
	if mtuMoved+devMoved == 0 {
		return
	}
	peers := make([]*Peer, len(old.Peers))
	for i, p := range old.Peers {
		cp := *p
		cp.pathMTU = mtus[i]
		if kp != nil {
			cp.offUnderlay = !via[i]
		}
		peers[i] = &cp
	}
	d.table.Store(NewTable(peers))
	d.syncKernelPath(peers)
	d.log.Info("routes toward peers changed", "path_mtu_changed", mtuMoved, "device_changed", devMoved, "peers", len(peers))
}
