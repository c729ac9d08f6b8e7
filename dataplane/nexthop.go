package dataplane

// Next hops for the send paths that write the outer Ethernet header
// themselves (the UDP-tunnel GSO TAP, tnlgso.go; the packet socket,
// pktsend.go): the MAC of the next hop toward each peer, from the kernel's
// own neighbour table (netcfg.NextHops), looked up once a second and soon
// after a packet found none. Those paths bypass the kernel's neighbour
// code, so it is the socket path's own sends (a packet with no hop yet
// goes that way) that make the kernel resolve and confirm an entry.

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"tunnelplane/dataplane/netcfg"
)

// hopResolver is what the data plane needs of its Network for these
// paths: netcfg.NextHops.
type hopResolver interface {
	NextHops(remotes []netip.Addr, via int, macs [][6]byte, ok []bool) error
}

// nextHops maps peer remotes to next-hop MACs on one underlay device.
type nextHops struct {
	link     netcfg.UnderlayLink
	resolver hopResolver
	// table is a snapshot the resolver replaces whole, read without a lock.
	table atomic.Pointer[map[netip.Addr][6]byte]
	miss  chan struct{} // a packet found no hop: resolve soon
}

func newNextHops(link netcfg.UnderlayLink, res hopResolver) *nextHops {
	h := &nextHops{link: link, resolver: res, miss: make(chan struct{}, 1)}
	empty := map[netip.Addr][6]byte{}
	h.table.Store(&empty)
	return h
}

// lookup returns the next-hop MAC toward remote, or asks for a lookup
// soon and reports false.
func (h *nextHops) lookup(remote netip.Addr) ([6]byte, bool) {
	mac, ok := (*h.table.Load())[remote]
	if !ok {
		select {
		case h.miss <- struct{}{}:
		default:
		}
	}
	return mac, ok
}

// run keeps the table for the peers of the tables peers returns, until
// done: once a second, and 20 ms after a miss (the packets sent the
// socket way meanwhile are what make the kernel resolve the hop).
func (h *nextHops) run(done <-chan struct{}, peers func() *Table, log *slog.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var remotes []netip.Addr
	var macs [][6]byte
	var ok []bool
	for {
		remotes = remotes[:0]
		for _, p := range peers().Peers {
			if p.Remote.Is4() {
				remotes = append(remotes, p.Remote)
			}
		}
		if cap(macs) < len(remotes) {
			macs, ok = make([][6]byte, len(remotes)), make([]bool, len(remotes))
		}
		macs, ok = macs[:len(remotes)], ok[:len(remotes)]
		if err := h.resolver.NextHops(remotes, h.link.Index, macs, ok); err != nil {
			log.Debug("next-hop lookup failed", "err", err)
		} else {
			next := make(map[netip.Addr][6]byte, len(remotes))
			for i, r := range remotes {
				if ok[i] {
					next[r] = macs[i]
				}
			}
			if !sameHops(*h.table.Load(), next) {
				h.table.Store(&next)
			}
		}
		select {
		case <-done:
			return
		case <-tick.C:
		case <-h.miss:
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func sameHops(a, b map[netip.Addr][6]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
