//go:build !linux

package topo

import (
	"net/netip"
	"testing"
)

// Bridge is unavailable off Linux.
type Bridge struct {
	NS   *NS
	Name string
}

// NewBridge skips the test: bridges need Linux.
func NewBridge(tb testing.TB, label string, addr netip.Prefix) *Bridge {
	tb.Skip(ErrUnsupported)
	return nil
}

// Attach is unavailable off Linux.
func (b *Bridge) Attach(tb testing.TB, n *NS, ifname string, addr netip.Prefix) string {
	tb.Skip(ErrUnsupported)
	return ""
}
