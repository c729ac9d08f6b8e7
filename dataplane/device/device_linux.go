package device

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

var _ Device = tun.Device(nil)

// tapDevice adapts a water TAP interface (one frame per system call) to
// the batch contract.
type tapDevice struct{ ifce *water.Interface }

func (d *tapDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

func (d *tapDevice) Write(bufs [][]byte, offset int) (int, error) {
	var errs error
	for i, b := range bufs {
		if _, err := d.ifce.Write(b[offset:]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return i, err
			}
			errs = errors.Join(errs, err)
		}
	}
	return len(bufs), errs
}

func (d *tapDevice) BatchSize() int          { return 1 }
func (d *tapDevice) file() *os.File          { f, _ := d.ifce.ReadWriteCloser.(*os.File); return f }
func (d *tapDevice) Name() (string, error)   { return d.ifce.Name(), nil }
func (d *tapDevice) Close() error            { return d.ifce.Close() }
func (d *tapDevice) File() (*os.File, error) { return nil, errors.ErrUnsupported }

// Open creates (or attaches to) the device cfg describes with n queues
// (IFF_MULTI_QUEUE when n > 1) and, with more than one, attaches the flow
// steering program. A device it created goes away when its queues close.
// Addresses, MTU and link state are the netlink side's job.
func Open(cfg Config, n int) ([]Device, error) {
	name := cfg.Name
	var devs []Device
	fail := func(err error) ([]Device, error) {
		for _, d := range devs {
			d.Close()
		}
		return nil, err
	}
	offload := cfg.Offload
	for range n {
		switch {
		case cfg.TAP:
			if offload {
				td, err := openVnetTAP(name, n > 1)
				if err == nil {
					devs = append(devs, td)
					continue
				}
				if !cfg.Fallback || len(devs) > 0 {
					return fail(fmt.Errorf("create tap %q with offloads: %w", name, err))
				}
				slog.Warn("TAP offloads unavailable; running without", "device", name, "err", err)
				offload = false
			}
			ifce, err := water.New(water.Config{DeviceType: water.TAP, PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: n > 1}})
			if err != nil {
				return fail(fmt.Errorf("create tap %q: %w", name, err))
			}
			devs = append(devs, &tapDevice{ifce: ifce})
		default:
			td, err := openTUNQueue(name, cfg.MTU, offload, n > 1)
			if err != nil && offload && cfg.Fallback && len(devs) == 0 {
				// A kernel without IFF_VNET_HDR or TSO on TUN: run without
				// offloads rather than not at all.
				slog.Warn("TUN offloads unavailable; running without", "device", name, "err", err)
				offload = false
				td, err = openTUNQueue(name, cfg.MTU, false, n > 1)
			}
			if err != nil {
				return fail(fmt.Errorf("create tun %q: %w", name, err))
			}
			devs = append(devs, td)
		}
	}
	if n > 1 {
		l2 := int32(0)
		if cfg.TAP {
			l2 = 14
		}
		if err := steerQueues(devs[0], l2); err != nil {
			slog.Warn("multi-queue device without flow steering: a TCP flow may move between queues and be reordered",
				"device", name, "err", err)
		}
	}
	for _, dev := range devs {
		if td, ok := dev.(tun.Device); ok {
			go func() { // wireguard-go's tun reports link events; nobody here needs them
				for range td.Events() {
				}
			}()
		}
	}
	return devs, nil
}

// steerQueues attaches the flow-hash steering program (steer_linux.go) to
// the device that dev is a queue of.
func steerQueues(dev Device, l2 int32) error {
	f := deviceFile(dev)
	if f == nil {
		return errors.ErrUnsupported
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setSteering(int(fd), l2) }); err != nil {
		return err
	}
	return serr
}

// openTUNQueue opens one queue of a TUN device. With offloads it asks for
// IFF_VNET_HDR, and wireguard-go's tun then turns on TSO/USO and splits and
// coalesces super-packets; without, every packet is one MTU-sized read.
func openTUNQueue(name string, mtu int, offload, multi bool) (Device, error) {
	flags := uint16(unix.IFF_TUN)
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	fd, _, err := openQueueFD(name, flags, multi)
	if err != nil {
		return nil, err
	}
	td, err := tun.CreateTUNFromFile(os.NewFile(uintptr(fd), "/dev/net/tun"), mtu)
	if err != nil {
		return nil, err
	}
	return wrapVnetTUN(td), nil
}

// openQueueFD opens one queue of the TUN or TAP device name (created if
// it does not exist) with flags (IFF_TUN or IFF_TAP, IFF_VNET_HDR) and
// IFF_NO_PI, IFF_MULTI_QUEUE when multi, non-blocking for the netpoller.
// It returns the queue's descriptor and the device's name as the kernel
// has it.
func openQueueFD(name string, flags uint16, multi bool) (int, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	flags |= unix.IFF_NO_PI
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	return fd, ifr.Name(), nil
}

// deviceFile returns the file of a device queue, or nil.
func deviceFile(dev Device) *os.File {
	switch d := dev.(type) {
	case Vnet:
		f, _, _ := d.Vnet()
		return f
	case tun.Device:
		return d.File()
	case *tapDevice:
		return d.file()
	}
	return nil
}

// WritesIntoHeadroom reports whether dev's Write puts bytes in front of
// the offset (wireguard-go's TUN with the virtio header writes that header
// there), so that packets written in one batch must not share a buffer.
func WritesIntoHeadroom(dev Device) bool {
	td, ok := dev.(tun.Device)
	return ok && td.BatchSize() > 1
}

// IsTooManySegments reports whether a Read error is a super-packet with
// more segments than the buffers given (the packet is lost, not the
// device): ours or wireguard-go's.
func IsTooManySegments(err error) bool {
	return errors.Is(err, ErrTooManySegments) || errors.Is(err, tun.ErrTooManySegments)
}

// ReadProbe tells, without blocking, whether a device has a packet queued.
type ReadProbe struct {
	rc    syscall.RawConn
	fds   [1]unix.PollFd
	ready bool
	fn    func(fd uintptr) // allocated once: a closure per call would escape
}

// NewReadProbe returns a probe for dev, or nil when dev has no file to
// poll. A probe belongs to one goroutine.
func NewReadProbe(dev Device) *ReadProbe {
	f := deviceFile(dev)
	if f == nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	p := &ReadProbe{rc: rc}
	p.fn = func(fd uintptr) {
		p.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		n, err := unix.Poll(p.fds[:], 0)
		p.ready = err == nil && n > 0 && p.fds[0].Revents&unix.POLLIN != 0
	}
	return p
}

// Readable reports whether a Read would find a packet now.
func (p *ReadProbe) Readable() bool {
	if p.rc.Control(p.fn) != nil {
		return false
	}
	return p.ready
}
