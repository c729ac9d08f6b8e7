package dataplane

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// vnetTUN is a TUN queue with the virtio header whose reads tunneld does
// itself (gsosplit.go): one read system call, then the split into the
// caller's buffers. Writes, Name and Close stay wireguard-go's.
type vnetTUN struct {
	tun.Device
	rc      syscall.RawConn
	scratch []byte // virtio header + up to 64 KiB packet

	// The current read, kept here for fn (allocated once: a closure per
	// call would escape).
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// wrapVnetTUN returns dev with tunneld's reader when dev is a TUN queue
// with the virtio header, else dev.
func wrapVnetTUN(dev tun.Device) Device {
	if dev.BatchSize() <= 1 || dev.File() == nil {
		return dev
	}
	rc, err := dev.File().SyscallConn()
	if err != nil {
		return dev
	}
	t := &vnetTUN{Device: dev, rc: rc, scratch: make([]byte, virtioHdrLen+65535)}
	t.fn = func(fd uintptr) bool {
		n, _, errno := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&t.scratch[0])), uintptr(len(t.scratch)))
		if errno == unix.EAGAIN {
			return false
		}
		t.n, t.errno = int(n), errno
		return errno != unix.EINTR
	}
	return t
}

// Read reads one packet and splits it into bufs (see tun.Device.Read).
func (t *vnetTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		t.n, t.errno = 0, 0
		if err := t.rc.Read(t.fn); err != nil {
			return 0, os.ErrClosed // the file is closing
		}
		switch t.errno {
		case 0:
		case unix.EBADFD:
			return 0, os.ErrClosed // a deleted device's queue
		case unix.EINTR:
			continue
		default:
			return 0, t.errno
		}
		if t.n < virtioHdrLen {
			return 0, errBadSuper
		}
		return splitSuper(t.scratch[virtioHdrLen:t.n], parseVirtioHdr(t.scratch), bufs, sizes, offset)
	}
}
