package underlay

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoTunnelGSO: the kernel's tun driver has no UDP-tunnel GSO (before
// Linux 6.17), so the sockets send everything.
var ErrNoTunnelGSO = errors.New("underlay: this kernel's TUN/TAP driver has no UDP-tunnel GSO (Linux 6.17 or later)")

// TunnelTAP is a UDP-tunnel GSO TAP with one queue per sending
// goroutine (IFF_MULTI_QUEUE), so that writers never wait on each other.
// Its descriptors are blocking and outside the netpoller, like the send
// sockets: a tun write never waits (nothing fills behind it).
type TunnelTAP struct {
	queues []*os.File
	name   string
}

// OpenTunnelTAP creates a TAP device from the name template (e.g.
// "tpgso%d"; the kernel picks the number) with n queues and the 24-byte
// tunnel virtio header. It answers ErrNoTunnelGSO where the kernel lacks
// the feature: TUNSETOFFLOAD refuses the unknown TUN_F_UDP_TUNNEL_GSO bit
// there (the write side depends only on the header size, so that ioctl is
// the only test). The device goes away when Close closes its queues.
func OpenTunnelTAP(name string, n int) (*TunnelTAP, error) {
	t := &TunnelTAP{name: name}
	for range max(n, 1) {
		f, err := t.openQueue()
		if err != nil {
			t.Close()
			return nil, err
		}
		t.queues = append(t.queues, f)
	}
	return t, nil
}

func (t *TunnelTAP) openQueue() (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tunnel GSO TAP: %w", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("tunnel GSO TAP: %s: %w", what, err)
	}
	ifr, err := unix.NewIfreq(t.name)
	if err != nil {
		return fail("name", err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF", err)
	}
	t.name = ifr.Name() // the next queues attach to the device made here
	sz := int32(TunnelVnetHdrLen)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETVNETHDRSZ, uintptr(unsafe.Pointer(&sz))); errno != 0 {
		return fail("TUNSETVNETHDRSZ", errno)
	}
	offl := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | tunFUDPTunnelGSO
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offl); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) {
			return nil, ErrNoTunnelGSO
		}
		return nil, fmt.Errorf("tunnel GSO TAP: TUNSETOFFLOAD: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// Name is the TAP's name as the kernel made it.
func (t *TunnelTAP) Name() string { return t.name }

// Queues is the number of queues.
func (t *TunnelTAP) Queues() int { return len(t.queues) }

// Write writes one frame (PutTunnelFrame's: virtio header first) to queue
// q. A closed TAP reports os.ErrClosed; the kernel's refusal of a frame
// (EINVAL: offsets it does not take) is the errno.
func (t *TunnelTAP) Write(q int, frame []byte) error {
	_, err := t.queues[q].Write(frame)
	if err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) {
			return os.ErrClosed
		}
		var errno unix.Errno
		if errors.As(err, &errno) {
			return errno
		}
	}
	return err
}

// Close closes the queues, which removes the TAP.
func (t *TunnelTAP) Close() error {
	for _, f := range t.queues {
		f.Close()
	}
	return nil
}
