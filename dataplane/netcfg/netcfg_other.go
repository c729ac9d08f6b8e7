//go:build !linux

package netcfg

import "net/netip"

// LinkExists reports false: no links here.
func LinkExists(name string) bool { return false }

// Configure is not supported: links and addresses need Linux.
func Configure(l Link, existed bool) (func(), error) { return nil, errNotSupported }

// SyncRoutes is not supported: routes need Linux.
func SyncRoutes(dev string, want, had []netip.Prefix) ([]netip.Prefix, error) {
	return had, errNotSupported
}

// PathMTUs answers every lookup with the configured limit.
type PathMTUs struct{}

// NewPathMTUs returns a PathMTUs that knows no routes.
func NewPathMTUs() *PathMTUs { return &PathMTUs{} }

// Lookup returns limit.
func (p *PathMTUs) Lookup(remote netip.Addr, limit int) int { return limit }

// Close does nothing.
func (p *PathMTUs) Close() {}

// UnderlayLink is the device that holds the local underlay address.
type UnderlayLink struct {
	Index int
	Name  string
	MAC   [6]byte
	MTU   int
}

// LinkOfAddr is not supported here.
func LinkOfAddr(local netip.Addr) (UnderlayLink, error) { return UnderlayLink{}, errNotSupported }

// RoutesVia is not supported here.
func RoutesVia(remotes []netip.Addr, via int, ok []bool) error { return errNotSupported }

// RedirectTAP is not supported here.
func RedirectTAP(tap string, to int) error { return errNotSupported }

// NextHops is not supported here.
func NextHops(remotes []netip.Addr, via int, macs [][6]byte, ok []bool) error { return errNotSupported }

// RouteChanges is not supported here.
func RouteChanges(skip int, done <-chan struct{}) (<-chan struct{}, error) {
	return nil, errNotSupported
}
