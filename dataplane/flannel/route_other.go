//go:build !linux

package flannel

import (
	"errors"
	"net/netip"
)

// EnsureNetworkRoute is not supported on this platform.
func EnsureNetworkRoute(dev string, network netip.Prefix) error {
	return errors.New("flannel: routes through the tunnel device are not supported on this platform")
}
