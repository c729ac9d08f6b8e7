package kernel

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/netcfg"
)

var (
	supportedMu sync.Mutex
	supported   = map[string]bool{}
)

// Supported reports whether this kernel can create links of the type that
// carries t in mode (vxlan, ipip, sit, gre; gretap for gre in tap mode). The
// first call per type creates a link of that type with a unique temporary
// name in the calling thread's namespace and deletes it at once; any
// failure ("Unknown device type", EOPNOTSUPP, EPERM) counts as unsupported.
// The answer is cached for the life of the process. ipudp and unknown
// types are never supported.
func Supported(t config.EncapType, mode config.Mode) bool {
	kind := linkKind(t, mode)
	supportedMu.Lock()
	defer supportedMu.Unlock()
	if ok, done := supported[kind]; done {
		return ok
	}
	ok := probe(kind) == nil
	supported[kind] = ok
	return ok
}

// probe creates and deletes a link of kind.
func probe(kind string) error {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	attrs := netlink.LinkAttrs{Name: "tpprobe" + hex.EncodeToString(b[:])} // 15 bytes
	loop := net.IPv4(127, 0, 0, 1)
	var l netlink.Link
	switch kind {
	case "vxlan":
		l = &netlink.Vxlan{LinkAttrs: attrs, VxlanId: 1, Port: 4789}
	case "ipip":
		l = &netlink.Iptun{LinkAttrs: attrs, Local: loop, Remote: loop}
	case "sit":
		l = &netlink.Sittun{LinkAttrs: attrs, Local: loop, Remote: loop}
	case "gre":
		l = &netlink.Gretun{LinkAttrs: attrs, Local: loop, Remote: loop}
	case "gretap":
		l = &netlink.Gretap{LinkAttrs: attrs, Local: loop, Remote: loop}
	default:
		return fmt.Errorf("%w: no kernel link type %q", ErrUnsupported, kind)
	}
	if err := netlink.LinkAdd(l); err != nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil {
		// Created but not deleted: try by name so that no probe link is
		// left behind, and still call the type supported.
		if got, err2 := netlink.LinkByName(attrs.Name); err2 == nil {
			netlink.LinkDel(got)
		}
	}
	return nil
}

// Link is a kernel tunnel link created (or adopted) by Apply, and the peer
// state programmed on it. Its methods are safe for concurrent use.
type Link struct {
	mu      sync.Mutex
	h       *netlink.Handle
	netcfg  *netcfg.Handle // MTU, MAC, addresses, up, routes: through h
	cfg     config.Config  // a copy; Peers is the last set programmed
	index   int
	adopted bool   // the kernel's fallback device (tunl0, ...): Close keeps it
	undo    func() // an adopted device's: takes back what netcfg.Configure added
	closed  bool

	routes []netcfg.Route                // ours, sorted (netcfg.SyncRoutesVia)
	neighs map[netip.Addr]*netlink.Neigh // overlay gateway -> peer MAC
	fdb    map[fdbKey]*netlink.Neigh
}

type fdbKey struct {
	mac [6]byte
	dst netip.Addr
}

// Apply is ApplyWithOptions in the calling thread's namespace.
func Apply(cfg *config.Config) (*Link, error) {
	return ApplyWithOptions(cfg, Options{})
}

// ApplyWithOptions creates the kernel link equivalent to cfg: the same
// name, MTU, MAC (vxlan and gretap), addresses (set as the userspace data
// plane sets them, netcfg.Configure); for vxlan the VNI, UDP port,
// local address, TTL, TOS and nolearning; for ipip, sit and gre the local
// address, TTL, TOS, path MTU discovery, and the GRE key (sent and
// required), checksums and sequence numbers (sent). It sets the link up and
// programs cfg.Peers (see SetPeers). On error nothing is left behind.
//
// A device of that name must not exist, except the fallback device the
// kernel creates with the ipip, sit or gre module (tunl0, sit0, gre0,
// gretap0; Calico uses tunl0 this way): that one is adopted as it is
// (local and remote any, its own TTL), given the MTU, addresses and
// routes, and on Close only stripped of them again (addresses it had
// before stay, and it is set down only if it was down).
//
// The vxlan link leaves the outer DF bit to the kernel's default (clear):
// the netlink library in use cannot set IFLA_VXLAN_DF.
func ApplyWithOptions(cfg *config.Config, opt Options) (_ *Link, err error) {
	if err := Compatible(cfg); err != nil {
		return nil, err
	}
	ns := opt.Namespace
	var h *netlink.Handle
	if ns != 0 && ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("kernel backend: netlink handle: %w", err)
	}
	l := &Link{
		h:      h,
		netcfg: netcfg.On(h),
		cfg:    *cfg,
		neighs: map[netip.Addr]*netlink.Neigh{},
		fdb:    map[fdbKey]*netlink.Neigh{},
	}
	l.cfg.Peers = nil
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	name := cfg.Device.Name
	wrap := func(what string, err error) error {
		return fmt.Errorf("kernel backend: %s %s: %s: %w", linkKind(cfg.Encap.Type, cfg.Device.Mode), name, what, err)
	}
	if old, err := h.LinkByName(name); err == nil {
		if !isFallback(old, cfg) {
			l.h = nil // not ours: Close must not delete it
			h.Close()
			return nil, wrap("create", fmt.Errorf("a device of that name (type %s) exists", old.Type()))
		}
		l.adopted = true
		l.index = old.Attrs().Index
	} else {
		link, err := newLink(cfg)
		if err != nil {
			return nil, wrap("create", err)
		}
		if err := h.LinkAdd(link); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				err = fmt.Errorf("%w (%w)", ErrUnsupported, err)
			}
			l.h = nil
			h.Close()
			return nil, wrap("create", err)
		}
		got, err := h.LinkByName(name)
		if err != nil {
			return nil, wrap("look up", err)
		}
		l.index = got.Attrs().Index
	}
	undo, err := l.netcfg.Configure(netcfg.Link{
		Name:      name,
		MTU:       cfg.Device.MTU,
		TAP:       hasMAC(cfg) && !l.adopted,
		MAC:       cfg.Device.MAC,
		Addresses: cfg.Device.Addresses,
	}, l.adopted)
	if err != nil {
		return nil, wrap("configure", err)
	}
	l.undo = undo
	if err := l.SetPeers(cfg.Peers); err != nil {
		return nil, err
	}
	return l, nil
}

// hasMAC reports whether the link is an Ethernet one whose MAC the config
// sets.
func hasMAC(cfg *config.Config) bool {
	return cfg.Encap.Type == config.EncapVXLAN || cfg.Encap.Type == config.EncapGRE && cfg.Device.Mode == config.ModeTAP
}

// isFallback reports whether l is the kernel's fallback device for the
// encapsulation (created with the module, named tunl0, sit0, gre0 or
// gretap0).
func isFallback(l netlink.Link, cfg *config.Config) bool {
	kind := linkKind(cfg.Encap.Type, cfg.Device.Mode)
	return l.Type() == kind && l.Attrs().Name == map[string]string{"ipip": "tunl0", "sit": "sit0", "gre": "gre0", "gretap": "gretap0"}[kind]
}

// newLink builds the netlink description of cfg's link.
func newLink(cfg *config.Config) (netlink.Link, error) {
	e := cfg.Encap
	attrs := netlink.LinkAttrs{Name: cfg.Device.Name, MTU: cfg.Device.MTU}
	local := net.IP(cfg.Underlay.Local.AsSlice())
	// Linux tunnels read TOS 1 as "inherit from the inner packet".
	tos := 1
	if e.TOS != config.Inherit {
		tos = e.TOS &^ 1
	}
	switch e.Type {
	case config.EncapVXLAN:
		attrs.HardwareAddr = net.HardwareAddr(cfg.Device.MAC[:])
		return &netlink.Vxlan{
			LinkAttrs: attrs,
			VxlanId:   int(e.VNI),
			SrcAddr:   local,
			Port:      int(e.Port),
			TTL:       int(e.TTL),
			TOS:       tos,
			Learning:  false,
		}, nil
	case config.EncapIPIP:
		return &netlink.Iptun{LinkAttrs: attrs, Local: local, Ttl: e.TTL, Tos: uint8(tos), PMtuDisc: 1}, nil
	case config.EncapSIT:
		return &netlink.Sittun{LinkAttrs: attrs, Local: local, Ttl: e.TTL, Tos: uint8(tos), PMtuDisc: 1}, nil
	case config.EncapGRE:
		var iflags, oflags uint16
		if e.HasKey {
			iflags |= nl.GRE_KEY
			oflags |= nl.GRE_KEY
		}
		if e.Checksum {
			oflags |= nl.GRE_CSUM
		}
		if e.Sequence {
			oflags |= nl.GRE_SEQ
		}
		if cfg.Device.Mode == config.ModeTAP {
			attrs.HardwareAddr = net.HardwareAddr(cfg.Device.MAC[:])
			t := &netlink.Gretap{LinkAttrs: attrs, Local: local, Ttl: e.TTL, Tos: uint8(tos), PMtuDisc: 1,
				IKey: e.Key, OKey: e.Key, IFlags: iflags, OFlags: oflags}
			if len(cfg.Peers) == 1 {
				t.Remote = net.IP(cfg.Peers[0].Remote.AsSlice())
			}
			return t, nil
		}
		return &netlink.Gretun{LinkAttrs: attrs, Local: local, Ttl: e.TTL, Tos: uint8(tos), PMtuDisc: 1,
			IKey: e.Key, OKey: e.Key, IFlags: iflags, OFlags: oflags}, nil
	}
	return nil, fmt.Errorf("%w: no kernel link for %s", ErrUnsupported, e.Type)
}

// Index returns the link's interface index.
func (l *Link) Index() int { return l.index }

// Name returns the link's name.
func (l *Link) Name() string { return l.cfg.Device.Name }

// SetPeers reprograms the link to exactly peers: it adds or replaces the
// routes, neighbour and FDB entries peers need (see the package
// documentation) and removes those it installed earlier that peers no
// longer need. Peers should satisfy the config rules (Config.Validate);
// routes.Merge output does. On error the state is partly updated; calling
// SetPeers again with the same peers completes it.
func (l *Link) SetPeers(peers []config.Peer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.h == nil {
		return errors.New("kernel backend: link is closed")
	}
	cfg := l.cfg
	cfg.Peers = peers
	if err := Compatible(&cfg); err != nil {
		return err
	}
	routes, neighs, fdb, err := l.desired(peers)
	if err != nil {
		return err
	}
	var errs []error
	// Remove stale entries first: a prefix moving between peers must not
	// meet its old neighbour entry.
	for k, n := range l.neighs {
		if want, keep := neighs[k]; !keep || !slices.Equal(want.HardwareAddr, n.HardwareAddr) {
			if !keep {
				if err := l.h.NeighDel(n); err != nil && !isGone(err) {
					errs = append(errs, fmt.Errorf("delete neighbour %s: %w", k, err))
					continue
				}
			}
			delete(l.neighs, k)
		}
	}
	for k, n := range l.fdb {
		if _, keep := fdb[k]; !keep {
			if err := l.h.NeighDel(n); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("delete fdb %s dst %s: %w", net.HardwareAddr(k.mac[:]), k.dst, err))
				continue
			}
			delete(l.fdb, k)
		}
	}
	// Then install: FDB, neighbours, and last the routes (netcfg: only the
	// difference, a route of ours whose gateway changed replaced in place,
	// stale ones removed), so that a new route's gateway resolves through
	// its neighbour entry.
	for k, n := range fdb {
		if _, have := l.fdb[k]; have {
			continue
		}
		var err error
		if k.mac == ([6]byte{}) {
			err = l.h.NeighAppend(n) // the flood list: one entry per remote
		} else {
			err = l.h.NeighSet(n)
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("fdb %s dst %s: %w", net.HardwareAddr(k.mac[:]), k.dst, err))
			continue
		}
		l.fdb[k] = n
	}
	for k, n := range neighs {
		if _, have := l.neighs[k]; have {
			continue
		}
		if err := l.h.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s: %w", k, err))
			continue
		}
		l.neighs[k] = n
	}
	if l.routes, err = l.netcfg.SyncRoutesVia(l.cfg.Device.Name, routes, l.routes); err != nil {
		errs = append(errs, err)
	}
	if err := l.setRemote(peers); err != nil {
		errs = append(errs, err)
	}
	l.cfg.Peers = peers
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kernel backend: %s: %w", l.cfg.Device.Name, err)
	}
	return nil
}

// setRemote points a gretap link at its one peer.
func (l *Link) setRemote(peers []config.Peer) error {
	if l.cfg.Encap.Type != config.EncapGRE || l.cfg.Device.Mode != config.ModeTAP || l.adopted {
		return nil
	}
	link, err := l.h.LinkByIndex(l.index)
	if err != nil {
		return err
	}
	t, ok := link.(*netlink.Gretap)
	if !ok {
		return fmt.Errorf("%s is a %s, not gretap", l.cfg.Device.Name, link.Type())
	}
	var want net.IP
	if len(peers) == 1 {
		want = net.IP(peers[0].Remote.AsSlice())
	} else if t.Local.To4() != nil {
		want = net.IPv4zero.To4()
	} else {
		want = net.IPv6zero
	}
	if t.Remote.Equal(want) {
		return nil
	}
	t.Remote = want
	if err := l.h.LinkModify(t); err != nil {
		return fmt.Errorf("gretap remote %s: %w", want, err)
	}
	return nil
}

// desired computes the routes, neighbour and FDB entries for peers.
func (l *Link) desired(peers []config.Peer) ([]netcfg.Route, map[netip.Addr]*netlink.Neigh, map[fdbKey]*netlink.Neigh, error) {
	var routes []netcfg.Route
	neighs := map[netip.Addr]*netlink.Neigh{}
	fdb := map[fdbKey]*netlink.Neigh{}
	tap := l.cfg.Device.Mode == config.ModeTAP
	addFDB := func(mac [6]byte, dst netip.Addr) {
		fdb[fdbKey{mac, dst}] = &netlink.Neigh{
			LinkIndex:    l.index,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(dst.AsSlice()),
			HardwareAddr: net.HardwareAddr(mac[:]),
		}
	}
	owner := map[netip.Addr]netip.Prefix{}
	for _, p := range peers {
		remote := p.Remote.Unmap()
		switch {
		case l.cfg.Encap.Type == config.EncapVXLAN && tap:
			addFDB([6]byte{}, remote)
			if p.MACSet {
				addFDB(p.MAC, remote)
			}
		case l.cfg.Encap.Type == config.EncapVXLAN:
			addFDB(p.MAC, remote)
			for _, pfx := range p.Prefixes {
				pfx = pfx.Masked()
				gw := pfx.Addr()
				if other, clash := owner[gw]; clash {
					return nil, nil, nil, fmt.Errorf("kernel backend: prefixes %s and %s start at the same address %s; the kernel backend uses it as the gateway of both", other, pfx, gw)
				}
				owner[gw] = pfx
				family := netlink.FAMILY_V4
				if gw.Is6() {
					family = netlink.FAMILY_V6
				}
				neighs[gw] = &netlink.Neigh{
					LinkIndex:    l.index,
					Family:       family,
					State:        netlink.NUD_PERMANENT,
					IP:           net.IP(gw.AsSlice()),
					HardwareAddr: net.HardwareAddr(p.MAC[:]),
				}
				r := netcfg.Route{Dst: pfx} // a single address: on the link
				if !pfx.IsSingleIP() {
					r.Via = gw
				}
				routes = append(routes, r)
			}
		case tap: // gretap: the remote is the link's; nothing per prefix
		default: // ipip, sit, gre: NBMA, the gateway is the endpoint
			for _, pfx := range p.Prefixes {
				pfx = pfx.Masked()
				gw := remote
				if pfx.Addr().Is6() && remote.Is4() {
					b := remote.As4()
					var v6 [16]byte
					copy(v6[12:], b[:])
					gw = netip.AddrFrom16(v6) // ::a.b.c.d
				}
				routes = append(routes, netcfg.Route{Dst: pfx, Via: gw})
			}
		}
	}
	return routes, neighs, fdb, nil
}

// isGone reports errors meaning "already not there".
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}

// Close deletes the link (and with it its addresses, routes, neighbour and
// FDB entries). An adopted fallback device is kept: Close removes the
// routes, entries and addresses it added and sets it down. Close is
// idempotent.
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.h == nil {
		return nil
	}
	defer l.h.Close()
	if l.index == 0 {
		return nil
	}
	link, err := l.h.LinkByIndex(l.index)
	if err != nil {
		if isGone(err) || errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		return fmt.Errorf("kernel backend: %s: %w", l.cfg.Device.Name, err)
	}
	if !l.adopted {
		if err := l.h.LinkDel(link); err != nil && !isGone(err) {
			return fmt.Errorf("kernel backend: delete %s: %w", l.cfg.Device.Name, err)
		}
		return nil
	}
	var errs []error
	if _, err := l.netcfg.SyncRoutesVia(l.cfg.Device.Name, nil, l.routes); err != nil {
		errs = append(errs, err)
	}
	for _, n := range l.neighs {
		if err := l.h.NeighDel(n); err != nil && !isGone(err) {
			errs = append(errs, err)
		}
	}
	if l.undo != nil {
		l.undo() // the addresses netcfg.Configure added; down if it was down
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kernel backend: release %s: %w", l.cfg.Device.Name, err)
	}
	return nil
}
