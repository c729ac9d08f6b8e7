//go:build !linux

package kernel

import "tunnelplane/dataplane/config"

// Supported is false without Linux netlink.
func Supported(t config.EncapType, mode config.Mode) bool { return false }

// Link is a kernel tunnel link; there are none without Linux.
type Link struct{}

// Apply needs Linux.
func Apply(cfg *config.Config) (*Link, error) { return nil, ErrUnsupported }

// ApplyWithOptions needs Linux.
func ApplyWithOptions(cfg *config.Config, opt Options) (*Link, error) { return nil, ErrUnsupported }

// Index is 0.
func (l *Link) Index() int { return 0 }

// Name is empty.
func (l *Link) Name() string { return "" }

// SetPeers needs Linux.
func (l *Link) SetPeers(peers []config.Peer) error { return ErrUnsupported }

// Close does nothing.
func (l *Link) Close() error { return nil }
