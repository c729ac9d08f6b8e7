package device

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GatherWriter writes batches of inner packets to a TUN queue opened with
// IFF_VNET_HDR, coalescing TCP runs (tcpgro.go) and gathering every packet
// with writev straight from where decap left it: no headroom is touched,
// so packets may share a buffer (the segments of one UDP GRO read).
type GatherWriter struct {
	rc   syscall.RawConn
	l2   int  // link-layer header in front of each packet (TAP: 14)
	mtu  int  // the device MTU: longer packets are super-packets (partial.go)
	uso  bool // the device takes UDP segmentation offload: coalesce UDP too
	segs []tcpSeg
	ends []int
	iovs []unix.Iovec
	vh   [VirtioHdrLen]byte // the current super-packet's header
	zero [VirtioHdrLen]byte // a plain packet: no GSO, checksum complete

	// The batch being written, kept here for fn, which is allocated once
	// (a closure per call would escape).
	pkts    [][]byte
	gsos    []uint16
	next    int // index into ends of the next run to write
	dropped int
	err     error
	fn      func(fd uintptr) bool
}

// NewGatherWriter returns a writer for dev when it is a device queue with
// the virtio header (vnet_linux.go), or nil.
func NewGatherWriter(dev Device, size, mtu int) *GatherWriter {
	vd, ok := dev.(Vnet)
	if !ok {
		return nil
	}
	f, l2, uso := vd.Vnet()
	if f == nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	w := &GatherWriter{rc: rc, l2: l2, mtu: mtu, uso: uso, segs: make([]tcpSeg, size), ends: make([]int, 0, size),
		iovs: make([]unix.Iovec, 0, maxCoalesceSegments+1)}
	w.fn = w.writeRuns
	return w
}

// Write writes pkts (at most the size given to NewGatherWriter) and returns
// how many the kernel refused and how many had a partial checksum. gsos[i]
// > 0 marks pkts[i] as a super-packet to write with a GSO header for
// segments of that size (partial.go). The error is only ever a closed
// device.
func (w *GatherWriter) Write(pkts [][]byte, gsos []uint16) (dropped, partial int, err error) {
	w.gsos = gsos
	w.ends = coalesceRuns(pkts, w.segs, w.ends, w.l2, w.mtu, w.uso)
	for i := range pkts {
		if w.segs[i].partial {
			partial++
		}
	}
	w.pkts, w.next, w.dropped, w.err = pkts, 0, 0, nil
	if err := w.rc.Write(w.fn); err != nil {
		return w.dropped, partial, err
	}
	dropped, err = w.dropped, w.err
	w.pkts, w.gsos = nil, nil
	return dropped, partial, err
}

// writeRuns is the RawConn callback: it writes the runs from w.next on,
// and returns false to wait for room when the queue is full.
func (w *GatherWriter) writeRuns(fd uintptr) bool {
	start := 0
	if w.next > 0 {
		start = w.ends[w.next-1]
	}
	for ; w.next < len(w.ends); w.next++ {
		end := w.ends[w.next]
		iovs := w.iovs[:0]
		head := w.pkts[start]
		if end-start == 1 {
			s := &w.segs[start]
			switch {
			case w.gsos[start] > 0 && s.hl > 0:
				// A peer's GSO super-packet, checksum partial (partial.go).
				superHeader(head[w.l2:], s, s.pay, int(w.gsos[start]), false, w.l2, &w.vh)
				iovs = appendIovec(iovs, w.vh[:])
			case s.partial:
				partialHeader(s, w.l2, &w.vh)
				iovs = appendIovec(iovs, w.vh[:])
			default:
				iovs = appendIovec(iovs, w.zero[:])
			}
			iovs = appendIovec(iovs, head)
		} else {
			h := &w.segs[start]
			pay := 0
			for i := start; i < end; i++ {
				pay += w.segs[i].pay
			}
			superHeader(head[w.l2:], h, pay, h.pay, w.segs[end-1].flags&tcpFlagPSH != 0, w.l2, &w.vh)
			iovs = appendIovec(iovs, w.vh[:])
			iovs = appendIovec(iovs, head)
			for i := start + 1; i < end; i++ {
				iovs = appendIovec(iovs, w.pkts[i][w.l2+w.segs[i].hl:])
			}
		}
		_, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
		switch errno {
		case 0:
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			w.next-- // again
			continue
		case unix.EBADFD:
			// The queue of a deleted device (wireguard-go reports the
			// same as a closed file).
			w.err = os.ErrClosed
			return true
		default:
			w.dropped += end - start
		}
		start = end
	}
	return true
}

func appendIovec(iovs []unix.Iovec, b []byte) []unix.Iovec {
	iovs = append(iovs, unix.Iovec{Base: &b[0]})
	iovs[len(iovs)-1].SetLen(len(b))
	return iovs
}
