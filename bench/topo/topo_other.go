//go:build !linux

package topo

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
)

// Stubs so that code importing topo builds everywhere; tests skip through
// RequireRoot before reaching them.

func BuildNS(label string) (*NS, error)                    { return nil, ErrUnsupported }
func Build(opt PairOptions) (*Pair, error)                 { return nil, ErrUnsupported }
func ConnectVeth(a, b *NS, ifA, ifB string, mtu int) error { return ErrUnsupported }
func (n *NS) Path() string                                 { return "" }
func (n *NS) Handle() *netlink.Handle                      { return nil }
func (n *NS) Fd() int                                      { return -1 }
func (n *NS) Close() error                                 { return nil }
func (n *NS) Do(fn func() error) error                     { return ErrUnsupported }
func (n *NS) Sysctl(key, value string) error               { return ErrUnsupported }
func (n *NS) LinkUp(ifname string) error                   { return ErrUnsupported }
func (n *NS) AddAddr(ifname string, p netip.Prefix) error  { return ErrUnsupported }
func (p *Pair) Close() error                               { return nil }
func (n *NS) SetOffloads(ctx context.Context, ifname string, on bool) error {
	return ErrUnsupported
}
func (n *NS) Offloads(ctx context.Context, ifname string) (map[string]bool, error) {
	return nil, ErrUnsupported
}
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Err = ErrUnsupported
	return cmd
}
func (n *NS) AddKernelVXLAN(v KernelVXLAN, peerOverlay netip.Addr, peerMAC [6]byte) error {
	return ErrUnsupported
}
func (n *NS) Ping(ctx context.Context, addr netip.Addr, count int) (string, error) {
	return "", ErrUnsupported
}
func (n *NS) PingWith(ctx context.Context, addr netip.Addr, o PingOptions) (string, error) {
	return "", ErrUnsupported
}

// Capture is unavailable off Linux.
type Capture struct{}

func (n *NS) StartCapture(ctx context.Context, ifname string, max int) (*Capture, error) {
	return nil, ErrUnsupported
}
func (c *Capture) Snapshot() []Frame   { return nil }
func (c *Capture) StopFrames() []Frame { return nil }
func (c *Capture) Stop() [][]byte      { return nil }
func (c *Capture) Err() error          { return nil }

func (n *NS) SNMP() (map[string]int64, error)    { return nil, ErrUnsupported }
func NoChecksumErrors(tb testing.TB, nss ...*NS) {}
