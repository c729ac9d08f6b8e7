package device

import (
	"errors"
	"os"
)

// Device is one queue of the overlay device: a TUN (IP packets) or a TAP
// (Ethernet frames). Its contract is wireguard-go's tun.Device:
//
//   - Read reads one or more packets into bufs[i][offset:], their lengths
//     into sizes[i], and returns how many; len(sizes) >= len(bufs). A
//     super-packet (TSO/USO) arrives split into up to len(bufs) packets.
//     errors.Is(err, ErrTooManySegments) or ErrBadSuper (IsTooManySegments)
//     says one packet was lost, not the device.
//   - Write writes each bufs[i][offset:] as one packet; the bytes in front
//     of offset may be used (a virtio header) unless WritesIntoHeadroom
//     says they are not.
//   - BatchSize is the most packets one Read returns; it does not change.
//   - A closed or deleted device reports os.ErrClosed.
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	Name() (string, error)
	Close() error
}

// ErrWouldBlock is what a shared view's Read and ReadSuper return when
// the queue is empty or its other reader holds the gate (Share).
var ErrWouldBlock = errors.New("device: nothing to read without waiting")

// Vnet is the optional ability of a queue opened with the virtio-net
// header (IFF_VNET_HDR), whose writes the data plane gathers itself
// (NewGatherWriter).
type Vnet interface {
	Device
	// Vnet returns the queue's file (nil: none to write to), the length of
	// the link-layer header in front of each IP packet (TUN 0, TAP 14), and
	// whether the queue takes UDP segmentation offload.
	Vnet() (f *os.File, l2 int, uso bool)
}

// SuperReader is the optional ability of a queue with the virtio header
// to hand over what the kernel wrote as it is: a TSO super-packet whole,
// for an underlay that segments it itself (the UDP-tunnel GSO TAP), where
// Read would split it.
type SuperReader interface {
	// ReadSuper reads one packet into buf[offset:] (the virtio header
	// goes in front of it, into the headroom; offset >= VirtioHdrLen) and
	// returns its length and virtio header. Nothing is checked or
	// completed: a plain packet may still carry a partial checksum
	// (SplitSuper completes it, as Read would have).
	ReadSuper(buf []byte, offset int) (int, VirtioHdr, error)
}

// Offloads reports whether dev takes GSO super-packets on write (TCP), and
// UDP ones too.
func Offloads(dev Device) (gso, uso bool) {
	vd, ok := dev.(Vnet)
	if !ok {
		return false, false
	}
	f, _, u := vd.Vnet()
	return f != nil, f != nil && u
}

// Config is what Open needs to know of the device.
type Config struct {
	Name string
	TAP  bool // Ethernet frames; else IP packets (TUN)
	MTU  int
	// Offload asks for the virtio header (TSO/USO); Fallback runs without
	// it when the kernel refuses (offload: auto) instead of failing.
	Offload, Fallback bool
}

// errNotSupported is what the device side answers where it needs Linux.
var errNotSupported = errors.New("device: not supported on this platform (TUN/TAP needs Linux)")
