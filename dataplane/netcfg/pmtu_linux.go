package netcfg

import (
	"net/netip"

	"github.com/vishvananda/netlink"
)

// PathMTUs looks up path MTUs toward peers over one netlink socket. It
// caches interface MTUs by index across its lookups: thousands of peers
// leave by the same few interfaces. Use one for the lookups of one table
// change, then Close it.
type PathMTUs struct {
	nl      *netlink.Handle
	own     bool // nl is a socket of its own (else the package default)
	linkMTU map[int]int
}

// NewPathMTUs opens a netlink socket for the lookups; where that fails,
// they go through netlink's package default.
func NewPathMTUs() *PathMTUs {
	p := &PathMTUs{linkMTU: map[int]int{}}
	if nl, err := netlink.NewHandle(); err == nil {
		p.nl, p.own = nl, true
	} else {
		p.nl = &netlink.Handle{}
	}
	return p
}

// Lookup returns the path MTU to remote: the smallest of limit (the
// configured underlay MTU), the MTU of the interface the route to remote
// leaves by, and the route's own MTU metric. Without a route it is limit.
func (p *PathMTUs) Lookup(remote netip.Addr, limit int) int {
	mtu := limit
	rs, err := p.nl.RouteGet(remote.AsSlice())
	if err != nil || len(rs) == 0 {
		return mtu
	}
	if rs[0].MTU > 0 {
		mtu = min(mtu, rs[0].MTU)
	}
	lm, ok := p.linkMTU[rs[0].LinkIndex]
	if !ok {
		if l, err := p.nl.LinkByIndex(rs[0].LinkIndex); err == nil {
			lm = l.Attrs().MTU
		}
		p.linkMTU[rs[0].LinkIndex] = lm
	}
	if lm > 0 {
		mtu = min(mtu, lm)
	}
	return mtu
}

// Close closes the socket.
func (p *PathMTUs) Close() {
	if p.own {
		p.nl.Close()
	}
}
