package routes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Watch is WatchWithOptions in the current namespace with the default
// debounce.
func Watch(ctx context.Context, devName string, fn func([]Peer)) error {
	return WatchWithOptions(ctx, devName, WatchOptions{}, fn)
}

// WatchWithOptions reports the peers learned from the kernel routes of the
// main routing table whose output device is devName and that have a
// gateway (IPv4 and IPv6; `onlink` or not; each hop of a multipath route
// counts on its own): one Peer per gateway with all its routes' prefixes,
// sorted by Remote, prefixes sorted.
//
// fn is called first with the routes that exist when the watch starts (an
// empty snapshot included), then after every change (add, delete, replace)
// that alters the snapshot, once per burst of changes (see
// WatchOptions.Debounce). Each call gets a fresh slice the callee may keep.
// fn runs on the caller's goroutine; while it runs, changes queue up.
//
// WatchWithOptions blocks until ctx is done and then returns nil. It
// returns an error when the device does not exist, when the netlink
// subscription fails, or when the device disappears (or is replaced by a
// new one of the same name) while watched.
func WatchWithOptions(ctx context.Context, devName string, opt WatchOptions, fn func([]Peer)) error {
	ns := opt.Namespace
	if ns == 0 {
		ns = netns.None()
	}
	debounce := opt.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("routes: netlink handle: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(devName)
	if err != nil {
		return fmt.Errorf("routes: device %s: %w", devName, err)
	}
	w := &watcher{h: h, dev: devName, index: link.Attrs().Index}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := ctx.Done()
	errc := make(chan error, 4)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	nsp := &ns
	// Links first: a device deleted between the route listing and the
	// link subscription would otherwise go unnoticed.
	linkc := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(linkc, done, netlink.LinkSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("routes: subscribe to links: %w", err)
	}
	// netlink's receive goroutines block sending on these channels; once
	// the watch ends, drain them until the cancelled subscriptions close
	// them.
	defer func() {
		cancel()
		go func() {
			for range linkc {
			}
		}()
	}()
	routec := make(chan netlink.RouteUpdate, 1024)
	if err := netlink.RouteSubscribeWithOptions(routec, done, netlink.RouteSubscribeOptions{
		Namespace:         nsp,
		ErrorCallback:     onErr,
		ListExisting:      true,
		ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return fmt.Errorf("routes: subscribe to routes: %w", err)
	}
	defer func() {
		cancel()
		go func() {
			for range routec {
			}
		}()
	}()
	// The device may have gone between LinkByName and the subscription.
	if err := w.checkLink(); err != nil {
		return err
	}

	// The updates only say that something changed: the snapshot is always
	// rebuilt from a fresh listing, so that replace, delete and multipath
	// semantics are the kernel's and not re-implemented here.
	var last []Peer
	first := true
	timer := time.NewTimer(0) // the first snapshot at once
	pending, burstStart := true, time.Now()
	trigger := func() {
		now := time.Now()
		if !pending {
			pending, burstStart = true, now
		}
		wait := debounce
		if rest := maxDelay - now.Sub(burstStart); rest < wait {
			wait = max(rest, 0)
		}
		timer.Reset(wait)
	}
	for {
		select {
		case <-done:
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("routes: watching %s: %w", devName, err)
		case u, ok := <-linkc:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("routes: watching %s: link subscription ended", devName)
			}
			if u.Index == int32(w.index) && u.Header.Type == unix.RTM_DELLINK {
				return fmt.Errorf("routes: device %s was deleted", devName)
			}
		case u, ok := <-routec:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("routes: watching %s: route subscription ended", devName)
			}
			if w.concerns(&u.Route) {
				trigger()
			}
		case <-timer.C:
			pending = false
			if err := w.checkLink(); err != nil {
				return err
			}
			peers, err := w.snapshot()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if first || !equal(peers, last) {
				first = false
				last = peers
				fn(clonePeers(peers))
			}
		}
	}
}

type watcher struct {
	h     *netlink.Handle
	dev   string
	index int
}

// checkLink fails when the device is gone or has been re-created.
func (w *watcher) checkLink() error {
	l, err := w.h.LinkByName(w.dev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("routes: device %s was deleted", w.dev)
		}
		return fmt.Errorf("routes: device %s: %w", w.dev, err)
	}
	if l.Attrs().Index != w.index {
		return fmt.Errorf("routes: device %s was re-created (index %d, was %d)", w.dev, l.Attrs().Index, w.index)
	}
	return nil
}

// concerns reports whether an update may change the snapshot: a route
// (or one hop of it) through the device. Updates for other devices are
// ignored without a listing.
func (w *watcher) concerns(r *netlink.Route) bool {
	if r.LinkIndex == w.index {
		return true
	}
	for _, nh := range r.MultiPath {
		if nh.LinkIndex == w.index {
			return true
		}
	}
	return false
}

// snapshot lists the main table's routes and keeps those through the
// device with a gateway.
func (w *watcher) snapshot() ([]Peer, error) {
	routes, err := w.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, 0)
	if err != nil {
		return nil, fmt.Errorf("routes: list routes: %w", err)
	}
	var cands []candidate
	for i := range routes {
		cands = append(cands, w.learn(&routes[i])...)
	}
	return group(cands), nil
}

// learn returns the peer routes in one kernel route.
func (w *watcher) learn(r *netlink.Route) []candidate {
	if r.Type != unix.RTN_UNICAST || r.Dst == nil {
		return nil
	}
	dst, ok := toPrefix(r.Dst)
	if !ok {
		return nil
	}
	var out []candidate
	add := func(link int, gw net.IP) {
		if link != w.index || gw == nil {
			return
		}
		a, ok := netip.AddrFromSlice(gw)
		if !ok {
			return
		}
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() {
			return
		}
		out = append(out, candidate{PeerRoute{Prefix: dst, Gateway: a}, r.Priority})
	}
	if len(r.MultiPath) == 0 {
		add(r.LinkIndex, r.Gw)
	}
	for _, nh := range r.MultiPath {
		add(nh.LinkIndex, nh.Gw)
	}
	return out
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	if bits == 32 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

func clonePeers(ps []Peer) []Peer {
	out := make([]Peer, len(ps))
	for i, p := range ps {
		out[i] = Peer{Remote: p.Remote, Prefixes: append([]netip.Prefix(nil), p.Prefixes...)}
	}
	return out
}
