//go:build !linux

package dataplane

import (
	"errors"
	"net/netip"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
)

// errNotSupported: the data plane's device, links and routes need Linux.
var errNotSupported = errors.New("dataplane: not supported on this platform (needs Linux)")

// openDevice is not supported: TUN/TAP devices and their links need Linux.
func openDevice(cfg *config.Config, n int) ([]device.Device, func(), error) {
	return nil, nil, errNotSupported
}

// syncRoutes is not supported: kernel routes through the device need Linux.
func syncRoutes(cfg *config.Config, peers []*Peer, had []netip.Prefix, owned map[netip.Prefix]bool) ([]netip.Prefix, error) {
	return had, errNotSupported
}
