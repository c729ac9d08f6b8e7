package underlay

import (
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendSocket opens an underlay socket that only sends: blocking, and not
// registered with Go's netpoller.
//
// Why: the netpoller registers every socket with epoll for reading and
// writing. Each sent skb, when freed (on a veth, as the peer's IP layer
// takes it), returns its memory to the socket and wakes the socket's
// waiters for write space: with an epoll entry on the socket, that is an
// ep_poll_callback under an irq-saving lock and often a wake-up of the
// thread in epoll_wait, for every packet. Raw IP sockets (IPIP, GRE) have
// no GSO, so they pay it per packet: perf showed sock_wfree's wake-up at
// 7% and task switches at 8% of the machine with IPIP at 1.5 Gbit/s. A
// socket nobody polls has no waiters, so the wake-up is skipped. The
// socket is blocking: when its send buffer is full, sendmmsg waits in the
// kernel, as the netpoller would have waited for write space.
//
// proto is the raw IP protocol, or 0 for UDP (bound to an ephemeral
// port). A raw socket receives a copy of every packet of its protocol; a
// filter that accepts nothing keeps those copies from queueing up, since
// nobody reads this one.
func sendSocket(local netip.Addr, proto int) (*os.File, error) {
	family, typ := unix.AF_INET, unix.SOCK_DGRAM
	if local.Is6() {
		family = unix.AF_INET6
	}
	p := 0
	if proto != 0 {
		typ, p = unix.SOCK_RAW, proto
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, p)
	if err != nil {
		return nil, fmt.Errorf("send socket: %w", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("send socket: %s: %w", what, err)
	}
	if proto != 0 {
		drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
		prog := unix.SockFprog{Len: 1, Filter: &drop[0]}
		if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			uintptr(unsafe.Pointer(&prog)), unsafe.Sizeof(prog), 0); errno != 0 {
			return fail("drop-all filter", errno)
		}
	}
	var sa unix.Sockaddr
	if local.Is6() {
		sa = &unix.SockaddrInet6{Addr: local.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: local.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind "+local.String(), err)
	}
	// Blocking: os.NewFile leaves a blocking descriptor out of the netpoller.
	return os.NewFile(uintptr(fd), fmt.Sprintf("underlay-send-%s", local)), nil
}
