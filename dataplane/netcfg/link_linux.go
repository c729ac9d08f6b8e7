package netcfg

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Handle does netcfg's work through one netlink socket, in the namespace
// it was opened in. The zero Handle is the calling thread's namespace,
// through netlink's package default (a socket per request) and, for a
// batch of routes, a socket of its own per batch.
type Handle struct {
	nl *netlink.Handle // nil: the calling thread's namespace
}

// On returns a Handle over nl, the caller's socket: the kernel backend
// programs its link through a socket opened in the namespace it was
// given. nl stays the caller's to close, after the last use of the Handle
// (and of the undo its Configure returned).
func On(nl *netlink.Handle) *Handle { return &Handle{nl: nl} }

// here is the package functions' Handle.
var here = &Handle{}

// conn returns the socket for single requests.
func (h *Handle) conn() *netlink.Handle {
	if h.nl != nil {
		return h.nl
	}
	return &netlink.Handle{} // netlink's package default
}

// batch returns a socket for a batch of requests and its release.
func (h *Handle) batch() (*netlink.Handle, func(), error) {
	if h.nl != nil {
		return h.nl, func() {}, nil
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, nil, err
	}
	return nl, nl.Close, nil
}

// LinkExists reports whether a link of that name is there.
func LinkExists(name string) bool { return here.LinkExists(name) }

// LinkExists reports whether a link of that name is there.
func (h *Handle) LinkExists(name string) bool {
	_, err := h.conn().LinkByName(name)
	return err == nil
}

// Configure sets the device's MTU, MAC (TAP), addresses and brings it up.
// existed says whether the device was there before tunneld opened it: the
// returned undo then removes the addresses Configure added, and sets the
// device down again if it was down before (a device tunneld created goes
// away with its addresses and routes on close).
func Configure(l Link, existed bool) (func(), error) { return here.Configure(l, existed) }

// Configure is the package's Configure, through h.
func (h *Handle) Configure(l Link, existed bool) (func(), error) {
	nl := h.conn()
	link, err := nl.LinkByName(l.Name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", l.Name, err)
	}
	wasUp := link.Attrs().Flags&net.FlagUp != 0
	var added []*netlink.Addr
	undo := func() {
		if !existed {
			return // the kernel removes a non-persistent device, its addresses and routes on close
		}
		for _, a := range added {
			nl.AddrDel(link, a)
		}
		if !wasUp {
			nl.LinkSetDown(link)
		}
	}
	if err := nl.LinkSetMTU(link, l.MTU); err != nil {
		return nil, fmt.Errorf("set mtu %d on %s: %w", l.MTU, l.Name, err)
	}
	if l.TAP {
		if err := nl.LinkSetHardwareAddr(link, net.HardwareAddr(l.MAC[:])); err != nil {
			return nil, fmt.Errorf("set mac on %s: %w", l.Name, err)
		}
	}
	// Addresses someone else put on the device (Felix keeps its tunnel
	// address on tunl0) are never touched: tunneld adds its own, and at exit
	// removes only those that were not there before it came.
	present := map[netip.Prefix]bool{}
	if existed {
		if as, err := nl.AddrList(link, netlink.FAMILY_ALL); err == nil {
			for _, a := range as {
				if pa, ok := netip.AddrFromSlice(a.IP); ok {
					ones, _ := a.Mask.Size()
					present[netip.PrefixFrom(pa.Unmap(), ones)] = true
				}
			}
		}
	}
	for _, p := range l.Addresses {
		if present[p] {
			continue
		}
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrReplace(link, a); err != nil {
			undo()
			return nil, fmt.Errorf("add address %s to %s: %w", p, l.Name, err)
		}
		added = append(added, a)
	}
	if err := nl.LinkSetUp(link); err != nil {
		undo()
		return nil, fmt.Errorf("set %s up: %w", l.Name, err)
	}
	return undo, nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
