// Package kernel is tunneld's kernel backend: where the running kernel has
// the tunnel link type, tunneld programs the kernel's own device (vxlan,
// ipip, sit, gre, gretap) instead of moving packets itself. The wire format
// is the same as the userspace data plane's, so kernel-backed and
// userspace nodes interoperate.
//
// Per peer it programs what flannel and Calico program:
//
//	vxlan, tun mode (flannel's vxlan backend):
//	  bridge fdb replace PEERMAC dev DEV dst REMOTE self permanent
//	  ip neigh replace GW lladdr PEERMAC dev DEV nud permanent
//	  ip route add PREFIX via GW dev DEV onlink       (GW = PREFIX's first address)
//	  ip route add PREFIX dev DEV                     (for a /32 or /128: GW is PREFIX)
//	vxlan, tap mode (L2, to be bridged):
//	  bridge fdb append 00:00:00:00:00:00 dev DEV dst REMOTE self permanent  (flood list)
//	  bridge fdb replace PEERMAC dev DEV dst REMOTE self permanent           (only a configured mac)
//	ipip, sit, gre, tun mode (Calico's tunl0, NBMA: the device has no remote):
//	  ip route add PREFIX via REMOTE dev DEV onlink
//	  (an IPv6 PREFIX over an IPv4 underlay goes via ::REMOTE, the
//	  IPv4-compatible address the sit/ip_tunnel drivers take the
//	  endpoint from)
//	gre, tap mode (gretap is point to point): the one peer is the device's remote.
//
// The link's MTU, MAC, addresses and up state and the routes are set by
// dataplane/netcfg, as for the userspace data plane: routes are marked
// proto 171 (netcfg.RouteProtocol), a route someone else has for the
// prefix is left as it is, and only tunneld's own are removed. This
// package keeps what is particular to the kernel's links: creating them,
// and their neighbour and FDB entries.
//
// The package does nothing on import; Supported probes lazily and caches.
package kernel

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netns"

	"tunnelplane/dataplane/config"
)

// Options tunes ApplyWithOptions.
type Options struct {
	// Namespace is the network namespace the link is created in and
	// programmed through (a netlink handle opened there). 0 and
	// netns.None() mean the calling thread's namespace.
	Namespace netns.NsHandle
}

// ErrUnsupported is wrapped by Use and Apply when the kernel lacks the link
// type (or the platform has no netlink).
var ErrUnsupported = errors.New("kernel backend unsupported")

// Compatible reports why cfg cannot run on the kernel backend regardless of
// what the kernel supports, or nil. The kernel's tunnel links cannot:
//   - carry ipudp (no kernel link type; flannel's udp backend was a
//     userspace daemon too);
//   - clear DF with a fixed TTL on ipip/sit/gre (the kernel requires path
//     MTU discovery when the TTL is fixed; encap.df: false);
//   - run gre in tap mode (gretap) toward more than one peer: it is point
//     to point;
//   - run gre in tun mode over an IPv6 underlay (ip6gre has no
//     IPv4-compatible nexthop form to address many peers from routes).
func Compatible(cfg *config.Config) error {
	e := cfg.Encap
	switch e.Type {
	case config.EncapIPUDP:
		return fmt.Errorf("kernel backend: ipudp has no kernel link type")
	case config.EncapIPIP, config.EncapSIT, config.EncapGRE:
		if e.DF == 0 {
			return fmt.Errorf("kernel backend: %s with a fixed ttl always sets DF (path MTU discovery); df: false needs the userspace backend", e.Type)
		}
	case config.EncapVXLAN:
	default:
		return fmt.Errorf("kernel backend: unknown encapsulation %q", e.Type)
	}
	if e.Type == config.EncapGRE {
		if cfg.Device.Mode == config.ModeTAP && len(cfg.Peers) > 1 {
			return fmt.Errorf("kernel backend: gretap is point to point; %d peers need the userspace backend", len(cfg.Peers))
		}
		if cfg.Device.Mode == config.ModeTUN && cfg.Underlay.Local.Is6() {
			return fmt.Errorf("kernel backend: gre in tun mode over an IPv6 underlay is not supported; use the userspace backend")
		}
	}
	return nil
}

// Use resolves cfg.Backend against this kernel: whether tunneld should run
// cfg on the kernel backend (Apply) rather than the userspace data plane.
//
//	userspace (or "")  false, nil
//	kernel             true, nil; or false and an error saying why it cannot
//	auto               true when Compatible(cfg) and Supported(type, mode), else false; never an error
func Use(cfg *config.Config) (bool, error) {
	switch cfg.Backend {
	case "", config.BackendUserspace:
		return false, nil
	case config.BackendKernel:
		if err := Compatible(cfg); err != nil {
			return false, err
		}
		if !Supported(cfg.Encap.Type, cfg.Device.Mode) {
			return false, fmt.Errorf("%w: this kernel cannot create %s links", ErrUnsupported, linkKind(cfg.Encap.Type, cfg.Device.Mode))
		}
		return true, nil
	case config.BackendAuto:
		return Compatible(cfg) == nil && Supported(cfg.Encap.Type, cfg.Device.Mode), nil
	}
	return false, fmt.Errorf("kernel backend: unknown backend %q", cfg.Backend)
}

// linkKind names the kernel link type for an encapsulation and mode.
func linkKind(t config.EncapType, mode config.Mode) string {
	if t == config.EncapGRE && mode == config.ModeTAP {
		return "gretap"
	}
	return string(t)
}
