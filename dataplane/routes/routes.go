// Package routes turns kernel routes into tunnel peers: the route-driven
// control input (DESIGN.md, "Control inputs" 2). A routing daemon such as
// BIRD (as Calico runs it) programs its tunnel device with routes like
//
//	ip route add 10.233.80.0/24 via 10.23.14.111 dev tunl0 onlink
//
// meaning "10.233.80.0/24 lies behind the tunnel endpoint 10.23.14.111".
// [Watch] reads those routes from the device tunneld owns and reports them,
// grouped by gateway, as [Peer]s; [Merge] combines them with the static
// peers of the config file.
//
// The package is pure control plane: it reads netlink, it never writes.
package routes

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"tunnelplane/dataplane/config"
)

// PeerRoute is one learned route: a route whose output device is the
// tunnel device and that has a gateway.
type PeerRoute struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// Peer is one tunnel endpoint learned from routes: the gateway of the
// routes (its underlay address) and the destinations of all of them,
// masked, sorted and de-duplicated.
type Peer struct {
	Remote   netip.Addr
	Prefixes []netip.Prefix
}

// candidate is a PeerRoute with the kernel's preference among routes to
// the same prefix (lower metric wins).
type candidate struct {
	PeerRoute
	metric int
}

// group builds the sorted, de-duplicated snapshot from learned routes. A
// prefix reached through several gateways (two routes with different
// metrics, or an ECMP route) goes to the one the kernel prefers: the lowest
// metric, then the lowest gateway address; a table has one peer per prefix.
func group(cands []candidate) []Peer {
	best := map[netip.Prefix]candidate{}
	for _, c := range cands {
		c.Prefix = c.Prefix.Masked()
		c.Gateway = c.Gateway.Unmap()
		old, ok := best[c.Prefix]
		if !ok || c.metric < old.metric || c.metric == old.metric && c.Gateway.Less(old.Gateway) {
			best[c.Prefix] = c
		}
	}
	byGW := map[netip.Addr][]netip.Prefix{}
	for pfx, c := range best {
		byGW[c.Gateway] = append(byGW[c.Gateway], pfx)
	}
	peers := make([]Peer, 0, len(byGW))
	for gw, pfxs := range byGW {
		slices.SortFunc(pfxs, comparePrefix)
		peers = append(peers, Peer{Remote: gw, Prefixes: pfxs})
	}
	slices.SortFunc(peers, func(a, b Peer) int { return a.Remote.Compare(b.Remote) })
	return peers
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// equal reports whether two snapshots are the same.
func equal(a, b []Peer) bool {
	return slices.EqualFunc(a, b, func(x, y Peer) bool {
		return x.Remote == y.Remote && slices.Equal(x.Prefixes, y.Prefixes)
	})
}

// Merge combines the static peers of a config (config.Peers, with their
// MACs) with a snapshot of learned ones into the peer list the data plane
// (or kernel.Link.SetPeers) takes. Static peers come first and win:
//   - a learned peer whose Remote is a static peer's adds the prefixes that
//     no other static peer claims to it;
//   - a learned prefix that a static peer already lists is dropped;
//   - a learned peer gets MAC config.DefaultMAC(Remote).
//
// local is the underlay address (config.Underlay.Local): a learned gateway
// of the other address family, or equal to local, cannot be a tunnel
// endpoint and is skipped; so is a learned prefix of a family the
// encapsulation does not carry (ipip: IPv4 only, sit: IPv6 only). Each
// skip is described in the returned notes, for the log.
//
// The static peers are not modified; the result shares no slices with
// either input.
func Merge(c *config.Config, learned []Peer) (peers []config.Peer, notes []string) {
	local := c.Underlay.Local
	carry4, carry6 := true, true
	switch c.Encap.Type {
	case config.EncapIPIP:
		carry6 = false
	case config.EncapSIT:
		carry4 = false
	}
	claimed := map[netip.Prefix]bool{}
	index := map[netip.Addr]int{}
	for _, p := range c.Peers {
		p.Prefixes = slices.Clone(p.Prefixes)
		index[p.Remote.Unmap()] = len(peers)
		peers = append(peers, p)
		for _, pfx := range p.Prefixes {
			claimed[pfx.Masked()] = true
		}
	}
	for _, l := range learned {
		r := l.Remote.Unmap()
		switch {
		case !r.IsValid():
			continue
		case local.IsValid() && r.Is4() != local.Is4():
			notes = append(notes, fmt.Sprintf("routes via %s ignored: underlay.local %s is the other address family", r, local))
			continue
		case r == local:
			notes = append(notes, fmt.Sprintf("routes via %s ignored: that is underlay.local itself", r))
			continue
		}
		i, ok := index[r]
		if !ok {
			i = len(peers)
			index[r] = i
			peers = append(peers, config.Peer{Remote: r, MAC: config.DefaultMAC(r)})
		}
		for _, pfx := range l.Prefixes {
			pfx = pfx.Masked()
			switch {
			case pfx.Addr().Is4() && !carry4 || pfx.Addr().Is6() && !carry6:
				notes = append(notes, fmt.Sprintf("route %s via %s ignored: %s does not carry that address family", pfx, r, c.Encap.Type))
				continue
			case claimed[pfx]:
				notes = append(notes, fmt.Sprintf("route %s via %s ignored: a configured peer lists that prefix", pfx, r))
				continue
			}
			claimed[pfx] = true
			peers[i].Prefixes = append(peers[i].Prefixes, pfx)
		}
	}
	// A learned peer all of whose prefixes were dropped carries nothing.
	out := peers[:0]
	for i, p := range peers {
		if i >= len(c.Peers) && len(p.Prefixes) == 0 {
			continue
		}
		out = append(out, p)
	}
	return out, notes
}
