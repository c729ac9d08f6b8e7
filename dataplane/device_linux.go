package dataplane

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"tunnelplane/dataplane/config"
)

// Device is the overlay side: a TUN (IP packets) or TAP (Ethernet frames).
// Its contract is wireguard-go's tun.Device: packets are read into and
// written from bufs at a fixed offset, leaving headroom in front.
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	Name() (string, error)
	Close() error
}

var _ Device = tun.Device(nil)

// tapDevice adapts a water TAP interface (one frame per system call) to
// the batch contract.
type tapDevice struct{ ifce *water.Interface }

func (d *tapDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

func (d *tapDevice) Write(bufs [][]byte, offset int) (int, error) {
	var errs error
	for i, b := range bufs {
		if _, err := d.ifce.Write(b[offset:]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return i, err
			}
			errs = errors.Join(errs, err)
		}
	}
	return len(bufs), errs
}

func (d *tapDevice) BatchSize() int          { return 1 }
func (d *tapDevice) file() *os.File          { f, _ := d.ifce.ReadWriteCloser.(*os.File); return f }
func (d *tapDevice) Name() (string, error)   { return d.ifce.Name(), nil }
func (d *tapDevice) Close() error            { return d.ifce.Close() }
func (d *tapDevice) File() (*os.File, error) { return nil, errors.ErrUnsupported }

// openDevice creates (or attaches to) the configured device with n queues
// (IFF_MULTI_QUEUE when n > 1) and brings it up with its addresses and
// MTU. The returned undo removes what this call added to a device that
// existed before; a device it created goes away when its queues close.
func openDevice(cfg *config.Config, n int) ([]Device, func(), error) {
	name := cfg.Device.Name
	_, existedErr := netlink.LinkByName(name)
	existed := existedErr == nil
	var devs []Device
	fail := func(err error) ([]Device, func(), error) {
		for _, d := range devs {
			d.Close()
		}
		return nil, nil, err
	}
	offload := cfg.Offload != "off"
	for range n {
		switch cfg.Device.Mode {
		case config.ModeTAP:
			if offload {
				td, err := openVnetTAP(name, n > 1)
				if err == nil {
					devs = append(devs, td)
					continue
				}
				if cfg.Offload != "auto" || len(devs) > 0 {
					return fail(fmt.Errorf("create tap %q with offloads: %w", name, err))
				}
				slog.Warn("TAP offloads unavailable; running without", "device", name, "err", err)
				offload = false
			}
			ifce, err := water.New(water.Config{DeviceType: water.TAP, PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: n > 1}})
			if err != nil {
				return fail(fmt.Errorf("create tap %q: %w", name, err))
			}
			devs = append(devs, &tapDevice{ifce: ifce})
		default:
			td, err := openTUNQueue(name, cfg.Device.MTU, offload, n > 1)
			if err != nil && offload && cfg.Offload == "auto" && len(devs) == 0 {
				// A kernel without IFF_VNET_HDR or TSO on TUN: run without
				// offloads rather than not at all.
				slog.Warn("TUN offloads unavailable; running without", "device", name, "err", err)
				offload = false
				td, err = openTUNQueue(name, cfg.Device.MTU, false, n > 1)
			}
			if err != nil {
				return fail(fmt.Errorf("create tun %q: %w", name, err))
			}
			devs = append(devs, td)
		}
	}
	if n > 1 {
		l2 := int32(0)
		if cfg.Device.Mode == config.ModeTAP {
			l2 = 14
		}
		if err := steerQueues(devs[0], l2); err != nil {
			slog.Warn("multi-queue device without flow steering: a TCP flow may move between queues and be reordered",
				"device", name, "err", err)
		}
	}
	undo, err := configureLink(cfg, existed)
	if err != nil {
		return fail(err)
	}
	return devs, undo, nil
}

// steerQueues attaches the flow-hash steering program (steer_linux.go) to
// the device that dev is a queue of.
func steerQueues(dev Device, l2 int32) error {
	f := deviceFile(dev)
	if f == nil {
		return errors.ErrUnsupported
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setSteering(int(fd), l2) }); err != nil {
		return err
	}
	return serr
}

// openTUNQueue opens one queue of a TUN device. With offloads it asks for
// IFF_VNET_HDR, and wireguard-go's tun then turns on TSO/USO and splits and
// coalesces super-packets; without, every packet is one MTU-sized read.
func openTUNQueue(name string, mtu int, offload, multi bool) (Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	td, err := tun.CreateTUNFromFile(os.NewFile(uintptr(fd), "/dev/net/tun"), mtu)
	if err != nil {
		return nil, err
	}
	return wrapVnetTUN(td), nil
}

// configureLink sets MTU, MAC (TAP), addresses and up through netlink.
func configureLink(cfg *config.Config, existed bool) (func(), error) {
	link, err := netlink.LinkByName(cfg.Device.Name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", cfg.Device.Name, err)
	}
	var added []*netlink.Addr
	undo := func() {
		if !existed {
			return // the kernel removes a non-persistent device, its addresses and routes on close
		}
		for _, a := range added {
			netlink.AddrDel(link, a)
		}
	}
	if err := netlink.LinkSetMTU(link, cfg.Device.MTU); err != nil {
		return nil, fmt.Errorf("set mtu %d on %s: %w", cfg.Device.MTU, cfg.Device.Name, err)
	}
	if cfg.Device.Mode == config.ModeTAP {
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(cfg.Device.MAC[:])); err != nil {
			return nil, fmt.Errorf("set mac on %s: %w", cfg.Device.Name, err)
		}
	}
	// Addresses someone else put on the device (Felix keeps its tunnel
	// address on tunl0) are never touched: tunneld adds its own, and at exit
	// removes only those that were not there before it came.
	present := map[netip.Prefix]bool{}
	if existed {
		if as, err := netlink.AddrList(link, netlink.FAMILY_ALL); err == nil {
			for _, a := range as {
				if pa, ok := netip.AddrFromSlice(a.IP); ok {
					ones, _ := a.Mask.Size()
					present[netip.PrefixFrom(pa.Unmap(), ones)] = true
				}
			}
		}
	}
	for _, p := range cfg.Device.Addresses {
		if present[p] {
			continue
		}
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			undo()
			return nil, fmt.Errorf("add address %s to %s: %w", p, cfg.Device.Name, err)
		}
		added = append(added, a)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		undo()
		return nil, fmt.Errorf("set %s up: %w", cfg.Device.Name, err)
	}
	return undo, nil
}

// RouteProtocol marks the routes tunneld adds (rtm_protocol; `ip route`
// shows "proto 171"). Deleting with it set makes the kernel remove only a
// route of ours: when a routing daemon (BIRD, Felix) has since replaced
// one with its own route to the same prefix, that route stays. 171 is in
// no iproute2 table and is not Felix's (80) or BIRD's (12).
const RouteProtocol = 171

// syncRoutes points the peers' prefixes that the device's own subnets do
// not already cover at the device, and removes the routes it added before
// for prefixes no peer has any more. had and the result are the routes in
// place, sorted (comparePrefix).
//
// Only the difference to had is written: a route it added before is not
// written again (a reload that changes one peer costs one or two netlink
// messages, not one per prefix), and a route someone else already has for
// the same prefix is left as it is (EEXIST) and not counted as ours, so
// tunneld never overwrites or removes a route it did not add. The sets are
// sorted slices rather than maps: at 100,000 prefixes a map per reload was
// the largest piece of garbage a reload left.
func syncRoutes(cfg *config.Config, peers []*Peer, had []netip.Prefix, owned map[netip.Prefix]bool) ([]netip.Prefix, error) {
	want := make([]netip.Prefix, 0, len(had)+8)
	for _, p := range peers {
		for _, pfx := range p.Prefixes {
			pfx = pfx.Masked()
			if !coveredByDevice(cfg, pfx) && !owned[pfx] {
				want = append(want, pfx)
			}
		}
	}
	slices.SortFunc(want, comparePrefix)
	want = slices.Compact(want)
	var add, del []netip.Prefix
	i, j := 0, 0
	for i < len(want) || j < len(had) {
		switch c := cmpNext(want, had, i, j); {
		case c < 0:
			add = append(add, want[i])
			i++
		case c > 0:
			del = append(del, had[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return had, nil
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return had, err
	}
	defer nl.Close()
	link, err := nl.LinkByName(cfg.Device.Name)
	if err != nil {
		return had, err
	}
	route := func(pfx netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixToIPNet(pfx), Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol}
	}
	var errs error
	var notAdded, kept []netip.Prefix // sorted, like add and del
	for _, pfx := range add {
		if err := nl.RouteAdd(route(pfx)); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				errs = errors.Join(errs, fmt.Errorf("route %s dev %s: %w", pfx, cfg.Device.Name, err))
			}
			notAdded = append(notAdded, pfx)
		}
	}
	for _, pfx := range del {
		if err := nl.RouteDel(route(pfx)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = errors.Join(errs, fmt.Errorf("remove route %s dev %s: %w", pfx, cfg.Device.Name, err))
			kept = append(kept, pfx)
		}
	}
	// now = want - notAdded + kept
	now := make([]netip.Prefix, 0, len(want)+len(kept))
	k := 0
	for _, pfx := range want {
		if k < len(notAdded) && notAdded[k] == pfx {
			k++
			continue
		}
		now = append(now, pfx)
	}
	if len(kept) > 0 {
		now = append(now, kept...)
		slices.SortFunc(now, comparePrefix)
	}
	return now, errs
}

// cmpNext compares want[i] with had[j], an exhausted side counting as
// larger.
func cmpNext(want, had []netip.Prefix, i, j int) int {
	switch {
	case i == len(want):
		return 1
	case j == len(had):
		return -1
	}
	return comparePrefix(want[i], had[j])
}

// comparePrefix orders prefixes by address, then length; it is quicker
// than netip.Addr.Compare on the 100,000 prefixes of a large table.
func comparePrefix(a, b netip.Prefix) int {
	x, y := a.Addr().As16(), b.Addr().As16()
	if c := cmp.Compare(binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(x[8:]), binary.BigEndian.Uint64(y[8:])); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Addr().BitLen(), b.Addr().BitLen()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func coveredByDevice(cfg *config.Config, pfx netip.Prefix) bool {
	for _, a := range cfg.Device.Addresses {
		if a.Bits() <= pfx.Bits() && a.Masked().Contains(pfx.Addr()) {
			return true
		}
	}
	return false
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// deviceFile returns the file of a device queue, or nil.
func deviceFile(dev Device) *os.File {
	switch d := dev.(type) {
	case vnetDevice:
		f, _, _ := d.vnet()
		return f
	case tun.Device:
		return d.File()
	case *tapDevice:
		return d.file()
	}
	return nil
}

// readProbe tells, without blocking, whether a device has a packet queued.
type readProbe struct {
	rc    syscall.RawConn
	fds   [1]unix.PollFd
	ready bool
	fn    func(fd uintptr) // allocated once: a closure per call would escape
}

// newReadProbe returns a probe for dev, or nil when dev has no file to poll.
func newReadProbe(dev Device) *readProbe {
	f := deviceFile(dev)
	if f == nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	p := &readProbe{rc: rc}
	p.fn = func(fd uintptr) {
		p.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		n, err := unix.Poll(p.fds[:], 0)
		p.ready = err == nil && n > 0 && p.fds[0].Revents&unix.POLLIN != 0
	}
	return p
}

func (p *readProbe) readable() bool {
	if p.rc.Control(p.fn) != nil {
		return false
	}
	return p.ready
}
