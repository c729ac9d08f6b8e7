package device

import (
	"fmt"
	"tunnelplane/dataplane/flowhash"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Queue steering for a multi-queue TUN/TAP device.
//
// Without a steering program the kernel sends a flow to the queue that
// last *wrote* packets of the same flow (tun's automq flow table, keyed by
// a symmetric hash). For a TCP stream through two tunnelds that loop is
// not stable: data read on queue 0 leaves from queue 0's socket, lands on
// whichever of the peer's SO_REUSEPORT sockets its port hashes to, the
// ACKs come back the same way to whichever socket of ours, and the queue
// that writes them to the device decides where the next data goes. With
// some port pairs the flow flips between queues every round trip, both
// readers send parts of it at once, and the peer sees it reordered
// (measured: 75,000-100,000 spurious retransmissions in 6 s at 4-5 Gbit/s
// in three runs of five; none with one queue).
//
// The steering program (package flowhash) picks the queue from a hash of the packet's
// addresses, protocol and TCP/UDP ports, so a flow always leaves through
// one queue, whatever the other direction does. It uses only classic
// packet loads, so it needs no helper and no GPL license; loading it needs
// CAP_BPF or CAP_SYS_ADMIN (tunneld does it before dropping privileges).

// setSteering loads the steering program and attaches it to the device
// that fd is a queue of.
func setSteering(fd int, l2 int32) error {
	pfd, err := flowhash.Load(flowhash.Program(l2, false, 0))
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	progFD := int32(pfd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tunSetBPF, uintptr(unsafe.Pointer(&progFD))); errno != 0 {
		return fmt.Errorf("TUNSETSTEERINGEBPF: %w", errno)
	}
	return nil
}

const tunSetBPF = 0x800454e0 // TUNSETSTEERINGEBPF: _IOR('T', 224, int)
