package dataplane

import (
	"time"
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

// recheckRoutes looks every peer's path MTU and, with the kernel path,
// its device up again (lookUpPaths, on copies: the live peers are read by
// the forwarding goroutines and are not written), and when any changed
// swaps in the table of copies and gives the kernel path its peers.
func (d *Dataplane) recheckRoutes() {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	old := d.table.Load()
	if old == nil || d.parts.Network == nil || len(old.Peers) == 0 {
		return
	}
	peers := make([]*Peer, len(old.Peers))
	for i, p := range old.Peers {
		cp := *p
		peers[i] = &cp
	}
	d.lookUpPaths(peers)
	mtuMoved, devMoved := 0, 0
	for i, p := range old.Peers {
		if peers[i].pathMTU != p.pathMTU {
			mtuMoved++
		}
		if peers[i].offUnderlay != p.offUnderlay {
			devMoved++
		}
	}
	if mtuMoved+devMoved == 0 {
		return
	}
	d.table.Store(NewTable(peers))
	d.syncKernelPath(peers)
	d.log.Info("routes toward peers changed", "path_mtu_changed", mtuMoved, "device_changed", devMoved, "peers", len(peers))
}
