package devicetest

import (
	"os"
	"sync/atomic"
)

// Fake is a device queue (device.Device) for pipeline tests: it hands out
// copies of Pkt, Burst at a time, until it has given Left; then reads fail
// as a closed device does. Writes are counted in Written.
type Fake struct {
	Pkt     []byte
	Left    int
	Burst   int
	Written atomic.Int64
}

// Read fills up to min(len(bufs), Left, Burst) packets at offset.
func (f *Fake) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if f.Left == 0 {
		return 0, os.ErrClosed
	}
	n := min(len(bufs), f.Left, f.Burst)
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], f.Pkt)
	}
	f.Left -= n
	return n, nil
}

// Write counts the packets.
func (f *Fake) Write(bufs [][]byte, offset int) (int, error) {
	f.Written.Add(int64(len(bufs)))
	return len(bufs), nil
}

// BatchSize is 128, as a queue with the virtio header.
func (f *Fake) BatchSize() int { return 128 }

// Name is "fake".
func (f *Fake) Name() (string, error) { return "fake", nil }

// Close does nothing.
func (f *Fake) Close() error { return nil }
