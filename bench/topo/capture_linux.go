package topo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultCaptureMax is the frame limit used when StartCapture gets max <= 0.
const DefaultCaptureMax = 10000

// captureSnap is the per-frame buffer: large enough for a 64 KiB GSO
// super-frame (veth offloads on) plus headers.
const captureSnap = 1 << 17

// Capture collects Ethernet frames seen on one interface (both directions)
// through an AF_PACKET socket. Frames are copies.
type Capture struct {
	fd     int
	max    int
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	frames []Frame
	err    error
}

// StartCapture opens an AF_PACKET socket bound to ifname inside the namespace
// and collects up to max frames (max <= 0: DefaultCaptureMax) in the
// background until Stop is called or ctx ends. Frames that reached the
// socket before Stop are still collected.
func (n *NS) StartCapture(ctx context.Context, ifname string, max int) (*Capture, error) {
	if max <= 0 {
		max = DefaultCaptureMax
	}
	link, err := n.handle.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: capture on %s: %w", n.Name, ifname, err)
	}
	fd := -1
	err = n.Do(func() error {
		// Protocol 0 at socket() receives nothing; bind() then enables
		// ETH_P_ALL for this interface only, so no frame from another
		// interface slips in between the two calls.
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}
		if err := unix.Bind(s, sa); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: capture on %s: %w", n.Name, ifname, err)
	}
	// Best effort: a large receive buffer, and a short timeout so the reader
	// notices Stop and ctx without a second wakeup mechanism.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &Capture{fd: fd, max: max, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run(ctx)
	return c, nil
}

func (c *Capture) run(ctx context.Context) {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, captureSnap)
	for {
		stopping := false
		select {
		case <-c.stop:
			stopping = true
		case <-ctx.Done():
			stopping = true
		default:
		}
		flags := unix.MSG_TRUNC
		if stopping {
			flags |= unix.MSG_DONTWAIT // drain what already arrived, then quit
		}
		n, from, err := unix.Recvfrom(c.fd, buf, flags)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if stopping && !errors.Is(err, unix.EINTR) {
					return
				}
				continue
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		f := Frame{Len: n}
		if n > len(buf) {
			n = len(buf)
		}
		f.Data = append([]byte(nil), buf[:n]...)
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			f.PktType = ll.Pkttype
			f.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		full := len(c.frames) >= c.max
		c.mu.Unlock()
		if full {
			return
		}
	}
}

// Snapshot returns the frames collected so far without stopping (for polling
// until an expected frame shows up).
func (c *Capture) Snapshot() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// StopFrames stops the capture (idempotent) and returns the frames with
// their direction.
func (c *Capture) StopFrames() []Frame {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return c.Snapshot()
}

// Stop stops the capture (idempotent) and returns the captured Ethernet
// frames in arrival order.
func (c *Capture) Stop() [][]byte {
	fs := c.StopFrames()
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i] = f.Data
	}
	return out
}

// Err reports a socket error that ended the capture early, if any.
func (c *Capture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
