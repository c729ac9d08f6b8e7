// Package underlaytest holds a fake underlay socket for pipeline tests.
package underlaytest

import (
	"net"
	"net/netip"
	"sync/atomic"

	"tunnelplane/dataplane/underlay"
)

// Fake is an underlay socket (underlay.Reader and Sender): reads return
// copies of Dgram from From until Left are given, then net.ErrClosed;
// writes are counted in Sent (datagrams; a GSO train per segment).
type Fake struct {
	Dgram []byte
	Segs  int // > 1: each read returns Segs copies back to back, as a UDP GRO read
	GSO   int // > 0: each read reports this UDP_GRO segment size (a UDP-tunnel GSO datagram)
	From  netip.AddrPort
	Left  int
	Sent  atomic.Int64
	// OnWrite, when set, sees every single-buffer message written.
	OnWrite func(b []byte)
}

var (
	_ underlay.Reader = (*Fake)(nil)
	_ underlay.Sender = (*Fake)(nil)
)

// ReadBatch fills up to min(len(ms), Left) messages.
func (f *Fake) ReadBatch(ms []underlay.Message) (int, error) {
	if f.Left == 0 {
		return 0, net.ErrClosed
	}
	n := min(len(ms), f.Left)
	for i := range n {
		ms[i].N = copy(ms[i].Buf, f.Dgram)
		ms[i].Addr, ms[i].GSOSize, ms[i].Trunc = f.From, 0, false
		if f.GSO > 0 {
			ms[i].GSOSize = f.GSO
		}
		for s := 1; s < f.Segs; s++ {
			ms[i].N += copy(ms[i].Buf[ms[i].N:], f.Dgram)
			ms[i].GSOSize = len(f.Dgram)
		}
	}
	f.Left -= n
	return n, nil
}

// NewBatchWriter returns f itself: all writers count into Sent.
func (f *Fake) NewBatchWriter(int) underlay.Writer { return f }

// WriteBatch counts the datagrams.
func (f *Fake) WriteBatch(ms []underlay.Message) (int, error) {
	var n int64
	for _, m := range ms {
		if f.OnWrite != nil && m.Bufs == nil {
			f.OnWrite(m.Buf)
		}
		if m.Bufs != nil {
			n += int64(len(m.Bufs))
		} else {
			n++
		}
	}
	f.Sent.Add(n)
	return len(ms), nil
}
