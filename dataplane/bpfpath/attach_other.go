//go:build !linux

package bpfpath

import (
	"errors"
	"net/netip"
)

// Path is the attached fast path; elsewhere than Linux there is none.
type Path struct{}

// ErrUnsupported is what Attach returns where tc programs do not exist.
var ErrUnsupported = errors.New("bpfpath: the in-kernel fast path needs Linux")

// ErrClosed is what a Path's methods return after Close.
var ErrClosed = errors.New("bpfpath: path closed")

// Attach reports ErrUnsupported.
func Attach(Config) (*Path, error) { return nil, ErrUnsupported }

// SetPeers does nothing.
func (*Path) SetPeers([]Peer) (int, error) { return 0, ErrUnsupported }

// Counters reports ErrUnsupported.
func (*Path) Counters() ([NumReasons]uint64, error) { return [NumReasons]uint64{}, ErrUnsupported }

// Underlay reports no device.
func (*Path) Underlay() int { return 0 }

// PeerCounters is what the programs carried for one peer.
type PeerCounters struct{ TxPackets, TxBytes, RxPackets, RxBytes uint64 }

// PeerCounters reports ErrUnsupported.
func (*Path) PeerCounters() (map[netip.Addr]PeerCounters, error) { return nil, ErrUnsupported }

// Close does nothing.
func (*Path) Close() error { return nil }
