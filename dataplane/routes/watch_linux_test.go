package routes

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"tunnelplane/bench/topo"
)

// addTUN creates a persistent TUN device in the namespace, up, with an
// address (the kernel accepts IPv4 `onlink` gateways only once the
// namespace has an IPv4 address).
func addTUN(t *testing.T, ns *topo.NS, name string, addr netip.Prefix) netlink.Link {
	t.Helper()
	err := ns.Do(func() error {
		// TUNSETIFF acts in the calling thread's namespace, not the handle's.
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_DEFAULTS})
	})
	if err != nil {
		t.Fatalf("tun %s: %v", name, err)
	}
	if err := ns.AddAddr(name, addr); err != nil {
		t.Fatal(err)
	}
	if err := ns.LinkUp(name); err != nil {
		t.Fatal(err)
	}
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ipnet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func route(l netlink.Link, dst, gw string) *netlink.Route {
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(dst)}
	if gw != "" {
		r.Gw = net.IP(netip.MustParseAddr(gw).AsSlice())
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	return r
}

type watch struct {
	snaps chan []Peer
	done  chan struct{} // closed when Watch has returned err
	err   error
}

func startWatch(t *testing.T, ns *topo.NS, dev string) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{snaps: make(chan []Peer, 100), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = WatchWithOptions(ctx, dev, WatchOptions{Namespace: netns.NsHandle(ns.Fd())}, func(p []Peer) { w.snaps <- p })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	return w
}

// next waits for the next snapshot.
func (w *watch) next(t *testing.T) []Peer {
	t.Helper()
	select {
	case p := <-w.snaps:
		return p
	case <-w.done:
		t.Fatalf("Watch returned %v, want a snapshot", w.err)
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot within 5s")
	}
	return nil
}

func (w *watch) expect(t *testing.T, want []Peer) {
	t.Helper()
	if got := w.next(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot\n got %v\nwant %v", got, want)
	}
}

// quiet checks that no snapshot comes for a while.
func (w *watch) quiet(t *testing.T) {
	t.Helper()
	select {
	case p := <-w.snaps:
		t.Fatalf("unexpected snapshot %v", p)
	case <-w.done:
		t.Fatalf("Watch returned %v", w.err)
	case <-time.After(300 * time.Millisecond):
	}
}

func peer(remote string, prefixes ...string) Peer {
	p := Peer{Remote: netip.MustParseAddr(remote)}
	for _, s := range prefixes {
		p.Prefixes = append(p.Prefixes, netip.MustParsePrefix(s))
	}
	return p
}

func TestWatch(t *testing.T) {
	ns := topo.NewNS(t, "routes")
	h := ns.Handle()
	tp0 := addTUN(t, ns, "tp0", netip.MustParsePrefix("10.200.1.1/32"))
	tp1 := addTUN(t, ns, "tp1", netip.MustParsePrefix("10.200.1.2/32"))

	// Routes that exist before the watch are in the first snapshot.
	if err := h.RouteAdd(route(tp0, "10.200.70.0/24", "10.99.0.110")); err != nil {
		t.Fatalf("onlink route on a TUN: %v", err)
	}
	w := startWatch(t, ns, "tp0")
	w.expect(t, []Peer{peer("10.99.0.110", "10.200.70.0/24")})

	steps := []struct {
		name string
		do   func() error
		want []Peer // nil: no snapshot expected
	}{
		{"delete the existing route", func() error { return h.RouteDel(route(tp0, "10.200.70.0/24", "10.99.0.110")) }, []Peer{}},
		{"add", func() error { return h.RouteAdd(route(tp0, "10.200.80.0/24", "10.99.0.111")) },
			[]Peer{peer("10.99.0.111", "10.200.80.0/24")}},
		{"second prefix via the same gateway", func() error { return h.RouteAdd(route(tp0, "10.200.81.0/24", "10.99.0.111")) },
			[]Peer{peer("10.99.0.111", "10.200.80.0/24", "10.200.81.0/24")}},
		{"IPv6 route", func() error { return h.RouteAdd(route(tp0, "fd00:200::/64", "fd99::2")) },
			[]Peer{peer("10.99.0.111", "10.200.80.0/24", "10.200.81.0/24"), peer("fd99::2", "fd00:200::/64")}},
		{"route on another device is ignored", func() error { return h.RouteAdd(route(tp1, "10.200.82.0/24", "10.99.0.112")) }, nil},
		{"route without gateway is ignored", func() error { return h.RouteAdd(route(tp0, "10.200.83.0/24", "")) }, nil},
		{"replace moves a prefix to another gateway", func() error { return h.RouteReplace(route(tp0, "10.200.81.0/24", "10.99.0.113")) },
			[]Peer{peer("10.99.0.111", "10.200.80.0/24"), peer("10.99.0.113", "10.200.81.0/24"), peer("fd99::2", "fd00:200::/64")}},
		{"a burst gives one snapshot", func() error {
			for _, r := range []*netlink.Route{
				route(tp0, "10.200.84.0/24", "10.99.0.114"),
				route(tp0, "10.200.85.0/24", "10.99.0.114"),
				route(tp0, "10.200.86.0/24", "10.99.0.114"),
			} {
				if err := h.RouteAdd(r); err != nil {
					return err
				}
			}
			return nil
		}, []Peer{peer("10.99.0.111", "10.200.80.0/24"), peer("10.99.0.113", "10.200.81.0/24"),
			peer("10.99.0.114", "10.200.84.0/24", "10.200.85.0/24", "10.200.86.0/24"), peer("fd99::2", "fd00:200::/64")}},
		{"delete", func() error {
			for _, r := range []*netlink.Route{
				route(tp0, "10.200.80.0/24", "10.99.0.111"),
				route(tp0, "10.200.84.0/24", "10.99.0.114"),
				route(tp0, "10.200.85.0/24", "10.99.0.114"),
				route(tp0, "10.200.86.0/24", "10.99.0.114"),
				route(tp0, "fd00:200::/64", "fd99::2"),
			} {
				if err := h.RouteDel(r); err != nil {
					return err
				}
			}
			return nil
		}, []Peer{peer("10.99.0.113", "10.200.81.0/24")}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want == nil {
			w.quiet(t)
			continue
		}
		w.expect(t, s.want)
		if s.name == "a burst gives one snapshot" {
			w.quiet(t)
		}
	}

	// The device going away ends the watch with an error.
	if err := h.LinkDel(tp0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
		if w.err == nil || !strings.Contains(w.err.Error(), "tp0 was deleted") {
			t.Fatalf("Watch returned %v, want device deleted", w.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not notice the device going away")
	}
}

func TestWatchMissingDevice(t *testing.T) {
	ns := topo.NewNS(t, "routes-missing")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := WatchWithOptions(ctx, "nope0", WatchOptions{Namespace: netns.NsHandle(ns.Fd())}, func([]Peer) {})
	if err == nil || !strings.Contains(err.Error(), "nope0") {
		t.Fatalf("got %v, want an error naming the device", err)
	}
}

// TestWatchCurrentNamespace runs Watch (no options) inside the namespace.
func TestWatchCurrentNamespace(t *testing.T) {
	ns := topo.NewNS(t, "routes-cur")
	tp0 := addTUN(t, ns, "tp0", netip.MustParsePrefix("10.200.1.1/32"))
	if err := ns.Handle().RouteAdd(route(tp0, "10.200.80.0/24", "10.99.0.111")); err != nil {
		t.Fatal(err)
	}
	var got []Peer
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return Watch(ctx, "tp0", func(p []Peer) { got = p; cancel() })
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Peer{peer("10.99.0.111", "10.200.80.0/24")}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
