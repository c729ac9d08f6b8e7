package underlay

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// OpenPacketSend opens n send-only packet sockets (AF_PACKET, SOCK_RAW)
// bound to the device with index ifindex, for raw-IP tunnels whose
// frames tunneld builds whole, Ethernet header included (issue 15, lead
// 3; the evidence is in bench/probe/packetsock). Bound with protocol 0,
// they receive nothing; their sends go out of that device as written,
// past the kernel's IP output (no routing, no netfilter, no
// fragmentation: a frame larger than the device's MTU is refused with
// EMSGSIZE). Messages carry no address. Like the send sockets they are
// blocking and outside the netpoller.
func OpenPacketSend(ifindex, n, batch int) ([]Sender, []io.Closer, error) {
	var senders []Sender
	var closers []io.Closer
	fail := func(err error) ([]Sender, []io.Closer, error) {
		for _, c := range closers {
			c.Close()
		}
		return nil, nil, err
	}
	for range max(n, 1) {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("packet socket: %w", err))
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			return fail(fmt.Errorf("packet socket: bind to interface %d: %w", ifindex, err))
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) // best effort, as the sockets
		f := os.NewFile(uintptr(fd), fmt.Sprintf("packet-send-%d", ifindex))
		closers = append(closers, f)
		c, err := NewBatchConn(f, batch, false)
		if err != nil {
			return fail(err)
		}
		senders = append(senders, c)
	}
	return senders, closers, nil
}
