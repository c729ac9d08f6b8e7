package topo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// readyTimeout bounds how long Build waits for the veths to become usable.
const readyTimeout = 10 * time.Second

// Build is NewPair for non-test callers (tunbench, make demo): two fresh
// namespaces joined by a veth pair with the underlay addresses configured,
// links up and usable. On error everything built so far is removed. The
// caller must call Close.
func Build(opt PairOptions) (_ *Pair, err error) {
	mtu := opt.MTU
	if mtu == 0 {
		mtu = 1500
	}
	p := &Pair{IfA: DefaultIfA, IfB: DefaultIfB, AddrA: DefaultAddrA, AddrB: DefaultAddrB, MTU: mtu, Offloads: opt.Offloads}
	if opt.IPv6 {
		p.AddrA6, p.AddrB6 = DefaultAddrA6, DefaultAddrB6
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.A, err = BuildNS("a"); err != nil {
		return nil, err
	}
	if p.B, err = BuildNS("b"); err != nil {
		return nil, err
	}
	if err = ConnectVeth(p.A, p.B, p.IfA, p.IfB, mtu); err != nil {
		return nil, err
	}
	for _, end := range []struct {
		ns     *NS
		ifname string
		addrs  []netip.Prefix
	}{{p.A, p.IfA, []netip.Prefix{p.AddrA, p.AddrA6}}, {p.B, p.IfB, []netip.Prefix{p.AddrB, p.AddrB6}}} {
		if opt.IPv6 {
			// A fresh namespace normally has IPv6 on, but a host may default it off.
			if err = end.ns.Sysctl("net/ipv6/conf/"+end.ifname+"/disable_ipv6", "0"); err != nil {
				return nil, fmt.Errorf("%s: enable IPv6 on %s: %w", end.ns.Name, end.ifname, err)
			}
		}
		for _, a := range end.addrs {
			if !a.IsValid() {
				continue
			}
			if err = end.ns.AddAddr(end.ifname, a); err != nil {
				return nil, err
			}
		}
		if !opt.Offloads {
			if err = end.ns.SetOffloads(context.Background(), end.ifname, false); err != nil {
				return nil, err
			}
		}
		if err = end.ns.LinkUp(end.ifname); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(readyTimeout)
	if err = p.A.waitReady(p.IfA, deadline); err != nil {
		return nil, err
	}
	if err = p.B.waitReady(p.IfB, deadline); err != nil {
		return nil, err
	}
	return p, nil
}

// Close removes the veth pair and both namespaces. It is idempotent and safe
// on a partly built Pair.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		// Deleting one end deletes both. Done explicitly so that the pair is
		// gone even if something (a leftover process or socket) keeps a
		// namespace alive after it is unmounted.
		if p.A != nil && p.A.handle != nil {
			if l, err := p.A.handle.LinkByName(p.IfA); err == nil {
				if err := p.A.handle.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete %s: %w", p.IfA, err))
				}
			}
		}
		for _, n := range []*NS{p.A, p.B} {
			if n != nil {
				if err := n.Close(); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
				}
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// ConnectVeth creates a veth pair with end ifA in a and end ifB in b (created
// directly in their namespaces, so the names never pass through the host
// namespace and cannot collide with parallel runs). mtu 0 keeps the default.
// The links are left down.
func ConnectVeth(a, b *NS, ifA, ifB string, mtu int) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: ifA, MTU: mtu},
		PeerName:      ifB,
		PeerNamespace: netlink.NsFd(b.fd),
		PeerMTU:       uint32(mtu),
	}
	if err := a.handle.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s/%s <-> %s/%s: %w", a.Name, ifA, b.Name, ifB, err)
	}
	return nil
}

// LinkUp sets a link up.
func (n *NS) LinkUp(ifname string) error {
	l, err := n.handle.LinkByName(ifname)
	if err == nil {
		err = n.handle.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("%s: %s up: %w", n.Name, ifname, err)
	}
	return nil
}

// AddAddr adds an address to a link; IPv6 addresses get nodad so they are
// usable at once.
func (n *NS) AddAddr(ifname string, p netip.Prefix) error {
	l, err := n.handle.LinkByName(ifname)
	if err == nil {
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		err = n.handle.AddrAdd(l, a)
	}
	if err != nil {
		return fmt.Errorf("%s: addr %s on %s: %w", n.Name, p, ifname, err)
	}
	return nil
}

// waitReady waits until ifname is operationally up and has no tentative
// IPv6 address.
func (n *NS) waitReady(ifname string, deadline time.Time) error {
	for {
		state, err := n.linkReady(ifname)
		if err != nil {
			return err
		}
		if state == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not usable after %v: %s", n.Name, ifname, readyTimeout, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// linkReady returns "" when usable, else what is still missing.
func (n *NS) linkReady(ifname string) (string, error) {
	l, err := n.handle.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", n.Name, ifname, err)
	}
	if st := l.Attrs().OperState; st != netlink.OperUp {
		return "operstate " + st.String(), nil
	}
	addrs, err := n.handle.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 && !a.IP.IsLinkLocalUnicast() {
			return "tentative " + a.IP.String(), nil
		}
	}
	return "", nil
}

// offloadFeatures are the ethtool features SetOffloads switches; rx off makes
// the receiving kernel verify checksums as it would for a frame off a wire.
var offloadFeatures = []string{"rx", "tx", "tso", "gso", "gro"}

// SetOffloads switches a device's checksum and segmentation offloads
// (`ethtool -K IF rx tx tso gso gro on|off`) inside the namespace.
func (n *NS) SetOffloads(ctx context.Context, ifname string, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	if err := haveEthtool(); err != nil {
		return err
	}
	args := []string{"-K", ifname}
	for _, f := range offloadFeatures {
		args = append(args, f, v)
	}
	out, err := n.Command(ctx, "ethtool", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: ethtool %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// haveEthtool says how to get ethtool when it is missing (a fresh machine
// has none until `make deps`).
func haveEthtool() error {
	if _, err := exec.LookPath("ethtool"); err != nil {
		return fmt.Errorf("ethtool is not installed (`make deps` installs it, or apt-get install -y ethtool): %w", err)
	}
	return nil
}

// Offloads returns a device's features as reported by `ethtool -k IF`
// (long names such as "tx-checksumming", "generic-receive-offload"), value
// true when on. Fixed features count by their state.
func (n *NS) Offloads(ctx context.Context, ifname string) (map[string]bool, error) {
	if err := haveEthtool(); err != nil {
		return nil, err
	}
	out, err := n.Command(ctx, "ethtool", "-k", ifname).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: ethtool -k %s: %w", n.Name, ifname, err)
	}
	m := make(map[string]bool)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "Features for") {
			continue
		}
		m[k] = strings.HasPrefix(strings.TrimSpace(v), "on")
	}
	return m, nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
