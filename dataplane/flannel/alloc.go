package flannel

import (
	"errors"
	"net/netip"
)

// ErrNoSubnets is Allocate's answer when every subnet is leased.
var ErrNoSubnets = errors.New("out of subnets: every subnet of the flannel network is leased")

// maxCandidates bounds the free subnets Allocate chooses among, as
// flanneld's does: a random pick among the first free ones makes two nodes
// that start together unlikely to race for the same subnet.
const maxCandidates = 100

// Allocate picks a free subnet of the network config: one from SubnetMin
// to SubnetMax that overlaps no subnet in taken. pick(n) returns an index
// in [0, n) (a random one in production; nil picks the first).
func Allocate(nc NetworkConfig, taken []netip.Prefix, pick func(n int) int) (netip.Prefix, error) {
	size := uint32(1) << (32 - nc.SubnetLen)
	var free []netip.Prefix
	for v, end := addrU32(nc.SubnetMin), addrU32(nc.SubnetMax); len(free) < maxCandidates; v += size {
		sn := netip.PrefixFrom(u32Addr(v), nc.SubnetLen)
		used := false
		for _, t := range taken {
			if t.Overlaps(sn) {
				used = true
				break
			}
		}
		if !used {
			free = append(free, sn)
		}
		if v >= end || v+size < v { // last subnet, or the address space ends
			break
		}
	}
	if len(free) == 0 {
		return netip.Prefix{}, ErrNoSubnets
	}
	i := 0
	if pick != nil {
		i = pick(len(free))
	}
	return free[i], nil
}

// FindOwn returns the lease whose PublicIP is ip (the node's own, from a
// previous run), preferring one that fits the network config.
func FindOwn(leases []Lease, ip netip.Addr, nc NetworkConfig) (Lease, bool) {
	var found Lease
	ok := false
	for _, l := range leases {
		if l.PublicIP != ip {
			continue
		}
		if nc.Compatible(l.Subnet) {
			return l, true
		}
		if !ok {
			found, ok = l, true
		}
	}
	return found, ok
}
