package flannel

import (
	"fmt"
	"net/netip"
	"slices"

	"tunnelplane/dataplane/config"
)

// Peers builds a peer snapshot from the leases the node knows: every lease
// of the node's backend but its own subnet becomes a peer with remote =
// PublicIP, prefixes = [subnet] and, for vxlan, mac = VtepMAC. Leases of
// another backend are returned in ignored. A lease naming the node's own
// PublicIP under another subnet (a stale lease of an earlier run) is
// ignored too. Two leases with the same PublicIP (a node that came back
// with a new subnet before its old lease expired) give one peer with both
// subnets and the MAC of the newer lease. Peers are sorted by remote,
// prefixes sorted.
func Peers(leases []Lease, own netip.Prefix, local netip.Addr, backend string) (peers []config.Peer, ignored []Lease) {
	byIP := map[netip.Addr]int{}
	newest := map[netip.Addr]int64{}
	for _, l := range leases {
		switch {
		case l.Subnet == own:
			continue
		case l.Backend() != backend || l.PublicIP == local:
			ignored = append(ignored, l)
			continue
		}
		i, ok := byIP[l.PublicIP]
		if !ok {
			i = len(peers)
			byIP[l.PublicIP] = i
			peers = append(peers, config.Peer{Remote: l.PublicIP, MAC: config.DefaultMAC(l.PublicIP)})
			newest[l.PublicIP] = -1
		}
		p := &peers[i]
		p.Prefixes = append(p.Prefixes, l.Subnet)
		if l.HasVtepMAC && l.Rev > newest[l.PublicIP] {
			p.MAC, p.MACSet = l.VtepMAC, true
			newest[l.PublicIP] = l.Rev
		}
	}
	for i := range peers {
		slices.SortFunc(peers[i].Prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
	slices.SortFunc(peers, func(a, b config.Peer) int { return a.Remote.Compare(b.Remote) })
	return peers, ignored
}

// Merge combines the static peers of the config file with a snapshot of
// learned ones into the list the data plane takes. Static peers come first
// and win: a learned prefix a static peer lists is dropped, and a learned
// peer whose remote is a static peer's adds its other prefixes to it. Each
// drop is described in notes, for the log. The inputs are not modified.
func Merge(static, learned []config.Peer) (peers []config.Peer, notes []string) {
	claimed := map[netip.Prefix]bool{}
	index := map[netip.Addr]int{}
	for _, p := range static {
		p.Prefixes = slices.Clone(p.Prefixes)
		index[p.Remote] = len(peers)
		peers = append(peers, p)
		for _, pfx := range p.Prefixes {
			claimed[pfx.Masked()] = true
		}
	}
	for _, l := range learned {
		var keep []netip.Prefix
		for _, pfx := range l.Prefixes {
			if claimed[pfx.Masked()] {
				notes = append(notes, fmt.Sprintf("lease %s of %s ignored: a configured peer lists that prefix", pfx, l.Remote))
				continue
			}
			claimed[pfx.Masked()] = true
			keep = append(keep, pfx)
		}
		if len(keep) == 0 {
			continue
		}
		if i, ok := index[l.Remote]; ok {
			peers[i].Prefixes = append(peers[i].Prefixes, keep...)
			continue
		}
		l.Prefixes = keep
		index[l.Remote] = len(peers)
		peers = append(peers, l)
	}
	return peers, notes
}
