package device

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// Devices with the virtio header (IFF_VNET_HDR), whose reads and writes
// tunneld does itself: reads split offloaded super-packets (gsosplit.go),
// writes coalesce TCP runs (tcpgro.go, tunwrite_linux.go).
//
// TUN queues come from wireguard-go's tun, which opens them, turns the
// offloads on and keeps Write (used for the few packets tunneld makes
// itself, ICMP errors), Name and Close. TAP queues tunneld opens itself:
// water, the TAP library for the offload-free path, has no virtio header.

var (
	_ Vnet        = (*vnetTUN)(nil)
	_ Vnet        = (*vnetTAP)(nil)
	_ SuperReader = (*vnetTUN)(nil)
	_ SuperReader = (*vnetTAP)(nil)
)

// vnetReader reads one packet per system call and splits it.
type vnetReader struct {
	rc      syscall.RawConn
	l2      int
	scratch []byte // virtio header + up to 64 KiB packet

	// The current read, kept here for fn (allocated once: a closure per
	// call would escape): into dst, which is scratch or the caller's
	// buffer (ReadSuper).
	dst   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool

	// A shared queue (share_linux.go): the gate both readers take, whether
	// this one holds it, whether this is the view that never waits (try),
	// and whether the last attempt found the gate taken (busy).
	gate    *readGate
	holding bool
	try     bool
	busy    bool
	tryFn   func(fd uintptr) // fn for Control, which never waits
}

func newVnetReader(f *os.File, l2 int) (*vnetReader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &vnetReader{rc: rc, l2: l2, scratch: make([]byte, VirtioHdrLen+65535+l2)}
	r.fn = func(fd uintptr) bool {
		if !r.take() {
			r.busy = true
			return true
		}
		n, _, errno := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.dst[0])), uintptr(len(r.dst)))
		if errno == unix.EAGAIN {
			if r.try {
				r.errno = errno
				return true
			}
			r.release() // about to wait: the other reader may read meanwhile
			return false
		}
		r.n, r.errno = int(n), errno
		return true
	}
	r.tryFn = func(fd uintptr) { r.fn(fd) }
	return r, nil
}

// read reads one packet and splits it into bufs (the tun.Device.Read
// contract).
func (r *vnetReader) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := r.readInto(r.scratch)
	if err != nil {
		return 0, err
	}
	return SplitSuper(r.scratch[VirtioHdrLen:n], ParseVirtioHdr(r.scratch), r.l2, bufs, sizes, offset)
}

// readSuper is SuperReader.ReadSuper: the virtio header lands in the
// headroom, just in front of the packet.
func (r *vnetReader) readSuper(buf []byte, offset int) (int, VirtioHdr, error) {
	if offset < VirtioHdrLen || offset >= len(buf) {
		return 0, VirtioHdr{}, ErrBadSuper
	}
	n, err := r.readInto(buf[offset-VirtioHdrLen:])
	if err != nil {
		return 0, VirtioHdr{}, err
	}
	return n - VirtioHdrLen, ParseVirtioHdr(buf[offset-VirtioHdrLen:]), nil
}

// readInto reads one virtio header and packet into dst and returns the
// bytes read (at least VirtioHdrLen).
func (r *vnetReader) readInto(dst []byte) (int, error) {
	r.dst = dst
	for {
		r.n, r.errno, r.busy = 0, 0, false
		var err error
		if r.try {
			// Control, not Read: Read would queue behind the other
			// reader's, which holds the file's read lock while it waits.
			err = r.rc.Control(r.tryFn)
		} else {
			err = r.rc.Read(r.fn)
		}
		if err != nil {
			return 0, os.ErrClosed // the file is closing
		}
		if r.busy {
			if r.try {
				return 0, ErrWouldBlock
			}
			r.gate.wait() // the other reader is running: until it gives the gate up
			continue
		}
		switch r.errno {
		case 0:
		case unix.EAGAIN: // only the view that never waits sees it
			return 0, ErrWouldBlock
		case unix.EBADFD:
			return 0, os.ErrClosed // a deleted device's queue
		case unix.EINTR:
			continue
		default:
			return 0, r.errno
		}
		if r.n < VirtioHdrLen {
			return 0, ErrBadSuper
		}
		return r.n, nil
	}
}

// vnetTUN is a wireguard-go TUN queue with tunneld's reader.
type vnetTUN struct {
	tun.Device
	r   *vnetReader
	uso bool
}

// wrapVnetTUN returns dev with tunneld's reader when dev is a TUN queue
// with the virtio header (wireguard-go reports a batch size above one only
// then), else dev.
func wrapVnetTUN(dev tun.Device) Device {
	if dev.BatchSize() <= 1 || dev.File() == nil {
		return dev
	}
	r, err := newVnetReader(dev.File(), 0)
	if err != nil {
		return dev
	}
	// wireguard-go turned USO on where the kernel has it (6.2 and later)
	// but does not say; asking again with the same flags tells.
	uso := false
	r.rc.Control(func(fd uintptr) {
		uso = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tunOffloadsTCP|tunOffloadsUDP) == nil
	})
	return &vnetTUN{Device: dev, r: r, uso: uso}
}

const (
	tunOffloadsTCP = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	tunOffloadsUDP = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

func (t *vnetTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.r.read(bufs, sizes, offset)
}

func (t *vnetTUN) ReadSuper(buf []byte, offset int) (int, VirtioHdr, error) {
	return t.r.readSuper(buf, offset)
}

func (t *vnetTUN) Vnet() (*os.File, int, bool) { return t.Device.File(), 0, t.uso }

// vnetTAP is a TAP queue opened with the virtio header and TSO/USO.
type vnetTAP struct {
	f    *os.File
	uso  bool
	name string
	r    *vnetReader
	hdr  [VirtioHdrLen]byte // zero: a complete packet, no offload
	iovs [2]unix.Iovec
}

// openVnetTAP opens one queue of TAP device name with the virtio header
// and TCP (and, where the kernel has it, UDP) segmentation offload.
func openVnetTAP(name string, multi bool) (*vnetTAP, error) {
	fd, ifname, err := openQueueFD(name, unix.IFF_TAP|unix.IFF_VNET_HDR, multi)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloadsTCP); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	uso := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunOffloadsTCP|tunOffloadsUDP) == nil // Linux 6.2 and later
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	r, err := newVnetReader(f, 14)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &vnetTAP{f: f, name: ifname, r: r, uso: uso}, nil
}

func (t *vnetTAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.r.read(bufs, sizes, offset)
}

func (t *vnetTAP) ReadSuper(buf []byte, offset int) (int, VirtioHdr, error) {
	return t.r.readSuper(buf, offset)
}

// Write writes each frame as it is (the data path writes through
// GatherWriter; this serves the frames tunneld makes itself).
func (t *vnetTAP) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		b = b[offset:]
		if len(b) == 0 {
			continue
		}
		var errno syscall.Errno
		err := t.r.rc.Write(func(fd uintptr) bool {
			t.iovs[0] = unix.Iovec{Base: &t.hdr[0]}
			t.iovs[0].SetLen(VirtioHdrLen)
			t.iovs[1] = unix.Iovec{Base: &b[0]}
			t.iovs[1].SetLen(len(b))
			_, _, errno = unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iovs[0])), 2)
			return errno != unix.EAGAIN
		})
		if err != nil || errno == unix.EBADFD {
			return i, os.ErrClosed
		}
		if errno != 0 {
			return i, errno
		}
	}
	return len(bufs), nil
}

func (t *vnetTAP) BatchSize() int              { return 128 }
func (t *vnetTAP) Name() (string, error)       { return t.name, nil }
func (t *vnetTAP) Close() error                { return t.f.Close() }
func (t *vnetTAP) Vnet() (*os.File, int, bool) { return t.f, 14, t.uso }
