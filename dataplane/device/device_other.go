//go:build !linux

package device

import "errors"

// Open is not supported: TUN/TAP queues, the virtio header and queue
// steering need Linux.
func Open(cfg Config, n int) ([]Device, error) { return nil, errNotSupported }

// WritesIntoHeadroom reports false: no device writes here.
func WritesIntoHeadroom(dev Device) bool { return false }

// IsTooManySegments reports whether a Read error is a super-packet with
// more segments than the buffers given.
func IsTooManySegments(err error) bool { return errors.Is(err, ErrTooManySegments) }

// ReadProbe is not supported here; NewReadProbe returns nil.
type ReadProbe struct{}

// NewReadProbe returns nil: no device to poll.
func NewReadProbe(dev Device) *ReadProbe { return nil }

// Readable reports false.
func (p *ReadProbe) Readable() bool { return false }

// GatherWriter is not supported here; NewGatherWriter returns nil.
type GatherWriter struct{}

// NewGatherWriter returns nil: no virtio-header device here.
func NewGatherWriter(dev Device, size, mtu int) *GatherWriter { return nil }

// Write is not supported.
func (w *GatherWriter) Write(pkts [][]byte, gsos []uint16) (dropped, partial int, err error) {
	return 0, 0, errNotSupported
}

// Share reports false: there are no queues to share here.
func Share(dev Device) (Device, bool) { return nil, false }

// ReleaseRead does nothing here.
func ReleaseRead(dev Device) {}
