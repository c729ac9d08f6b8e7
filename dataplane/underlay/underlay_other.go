//go:build !linux

package underlay

import (
	"io"
	"log/slog"
)

// Open is not supported: batched socket I/O needs Linux.
func Open(o Options, queues int, log *slog.Logger) (*Sockets, error) { return nil, errNotSupported }

// IsTransient reports false.
func IsTransient(err error) bool { return false }

// IsGSORefused reports false: there is no GSO here.
func IsGSORefused(err error) bool { return false }

// ErrNoTunnelGSO: there is no TUN/TAP here.
var ErrNoTunnelGSO = errNotSupported

// TunnelTAP is not supported here.
type TunnelTAP struct{}

// OpenTunnelTAP is not supported here.
func OpenTunnelTAP(name string, n int) (*TunnelTAP, error) { return nil, ErrNoTunnelGSO }

// Name is "".
func (t *TunnelTAP) Name() string { return "" }

// Write is not supported here.
func (t *TunnelTAP) Write(q int, frame []byte) error { return errNotSupported }

// Queues is 0.
func (t *TunnelTAP) Queues() int { return 0 }

// Close does nothing.
func (t *TunnelTAP) Close() error { return nil }

// OpenPacketSend is not supported here.
func OpenPacketSend(ifindex, n, batch int) ([]Sender, []io.Closer, error) {
	return nil, nil, errNotSupported
}
