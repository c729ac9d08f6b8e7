package dataplane

import (
	"net/netip"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/netcfg"
)

// RouteProtocol marks the routes tunneld adds (netcfg.RouteProtocol).
const RouteProtocol = netcfg.RouteProtocol

// openDevice opens the configured device with n queues (device.Open) and
// brings it up with its addresses and MTU (netcfg.Configure). The
// returned undo removes what this call added to a device that existed
// before; a device it created goes away when its queues close.
func openDevice(cfg *config.Config, n int) ([]device.Device, func(), error) {
	existed := netcfg.LinkExists(cfg.Device.Name)
	devs, err := device.Open(device.Config{
		Name:     cfg.Device.Name,
		TAP:      cfg.Device.Mode == config.ModeTAP,
		MTU:      cfg.Device.MTU,
		Offload:  cfg.Offload != "off",
		Fallback: cfg.Offload == "auto",
	}, n)
	if err != nil {
		return nil, nil, err
	}
	undo, err := netcfg.Configure(netcfg.Link{
		Name:      cfg.Device.Name,
		MTU:       cfg.Device.MTU,
		TAP:       cfg.Device.Mode == config.ModeTAP,
		MAC:       cfg.Device.MAC,
		Addresses: cfg.Device.Addresses,
	}, existed)
	if err != nil {
		for _, d := range devs {
			d.Close()
		}
		return nil, nil, err
	}
	return devs, undo, nil
}

// syncRoutes points the peers' prefixes that the device's own subnets do
// not already cover, and that no routing daemon owns (owned), at the
// device, and removes the routes it added before (had) for prefixes no
// peer has any more (netcfg.SyncRoutes says how little it writes).
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
	return netcfg.SyncRoutes(cfg.Device.Name, want, had)
}

func coveredByDevice(cfg *config.Config, pfx netip.Prefix) bool {
	for _, a := range cfg.Device.Addresses {
		if a.Bits() <= pfx.Bits() && a.Masked().Contains(pfx.Addr()) {
			return true
		}
	}
	return false
}
