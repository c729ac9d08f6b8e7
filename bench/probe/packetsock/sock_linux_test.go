//go:build linux

package packetsock

import (
	"fmt"
	"net"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr (x/sys has no type for it).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// mmsg runs sendmmsg or recvmmsg over hdrs until all are sent (send) or once
// (receive), retrying EINTR.
func mmsg(trap uintptr, fd int, hdrs []mmsghdr, flags int) (int, error) {
	for {
		n, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), uintptr(flags), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return int(n), errno
		}
		return int(n), nil
	}
}

func sendAll(fd int, hdrs []mmsghdr) error {
	for len(hdrs) > 0 {
		n, err := mmsg(unix.SYS_SENDMMSG, fd, hdrs, 0)
		if err != nil {
			return fmt.Errorf("sendmmsg: %w", err)
		}
		hdrs = hdrs[n:]
	}
	return nil
}

// sender sends one batch of prebuilt inner packets per call.
type sender interface {
	send() error
	name() string
}

// rawSender is today's path (a): socket(AF_INET, SOCK_RAW, 4) bound to
// 10.99.0.1, a drop-all filter as in underlay.sendSocket, blocking, one
// sendmmsg per batch of 64 with 10.99.0.2 as every message's destination;
// the kernel routes, builds the outer IPv4 header and resolves the
// neighbour.
type rawSender struct {
	fd   int
	hdrs []mmsghdr
	iovs []unix.Iovec
	dst  unix.RawSockaddrInet4
}

func (e *env) openRaw(ns string, local [4]byte) int {
	return e.socketIn(ns, unix.AF_INET, unix.SOCK_RAW, ipipProto, func(fd int) error {
		if err := dropAll(fd); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: local})
	})
}

func dropAll(fd int) error {
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
		return fmt.Errorf("drop-all filter: %w", err)
	}
	return nil
}

func newRawSender(fd int, inner [][]byte) *rawSender {
	s := &rawSender{fd: fd, hdrs: make([]mmsghdr, len(inner)), iovs: make([]unix.Iovec, len(inner))}
	s.dst.Family = unix.AF_INET
	s.dst.Addr = outerDst
	for i, p := range inner {
		s.iovs[i].Base = &p[0]
		s.iovs[i].SetLen(len(p))
	}
	return s
}

func (s *rawSender) name() string { return "raw sendmmsg-64" }

func (s *rawSender) send() error {
	for i := range s.hdrs {
		h := &s.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.dst))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Control, h.Controllen, h.Flags = nil, 0, 0
	}
	return sendAll(s.fd, s.hdrs)
}

// openPacket opens socket(AF_PACKET, SOCK_RAW, 0) bound to ifindex with
// protocol 0: the socket receives nothing, and the kernel takes each sent
// frame's protocol from its Ethernet header (packet_parse_headers).
func (e *env) openPacket(ns string, ifindex int, bypass bool) int {
	return e.socketIn(ns, unix.AF_PACKET, unix.SOCK_RAW, 0, func(fd int) error {
		if bypass {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
				return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
			}
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex})
	})
}

// pktSender is path (b): an AF_PACKET socket bound to vxa, one sendmmsg per
// batch of 64; each message is two iovecs, a 34-byte Ethernet + outer IPv4
// header written per packet (id, incremental checksum) and the inner
// packet where it lies.
type pktSender struct {
	fd     int
	bypass bool
	hdrs   []mmsghdr
	iovs   []unix.Iovec
	heads  []byte
	inner  [][]byte
	tmpl   [headLen]byte
	id     uint16
}

func newPktSender(fd int, bypass bool, inner [][]byte, dst, src net.HardwareAddr) *pktSender {
	s := &pktSender{fd: fd, bypass: bypass, hdrs: make([]mmsghdr, len(inner)), iovs: make([]unix.Iovec, 2*len(inner)),
		heads: make([]byte, headLen*len(inner)), inner: inner, tmpl: headTemplate(dst, src)}
	return s
}

func (s *pktSender) name() string {
	if s.bypass {
		return "packet sendmmsg-64 +bypass"
	}
	return "packet sendmmsg-64"
}

func (s *pktSender) send() error {
	for i, p := range s.inner {
		hd := s.heads[i*headLen : (i+1)*headLen]
		s.id++
		putHead(hd, &s.tmpl, s.id)
		io := s.iovs[2*i : 2*i+2]
		io[0].Base, io[1].Base = &hd[0], &p[0]
		io[0].SetLen(headLen)
		io[1].SetLen(len(p))
		h := &s.hdrs[i].hdr
		h.Name, h.Namelen = nil, 0
		h.Iov = &io[0]
		h.SetIovlen(2)
		h.Control, h.Controllen, h.Flags = nil, 0, 0
	}
	return sendAll(s.fd, s.hdrs)
}

// txRing is path (c): a TPACKET_V2 TX ring on an AF_PACKET socket bound to
// vxa. Per batch: 64 frames filled (header + a copy of the inner packet,
// status SEND_REQUEST), then one blocking send(fd, NULL, 0), which returns
// when the kernel has sent them and freed their skbs.
type txRing struct {
	fd        int
	bypass    bool
	ring      []byte
	frameSize int
	frames    int
	next      int
	inner     [][]byte
	tmpl      [headLen]byte
	id        uint16
	kicks     int // extra sends to free a frame not yet AVAILABLE
}

const (
	txFrameSize = 2048 // >= 32 + 1414
	txBlockSize = 1 << 16
	txFrames    = 256 // four batches
	// tpacket2Data is where a TPACKET_V2 TX frame's data starts without
	// PACKET_TX_HAS_OFF: TPACKET2_HDRLEN - sizeof(struct sockaddr_ll) =
	// TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) = 32.
	tpacket2Data = 32
)

func (e *env) openTxRing(ns string, ifindex int, bypass bool, inner [][]byte, dst, src net.HardwareAddr) *txRing {
	r := &txRing{bypass: bypass, frameSize: txFrameSize, frames: txFrames, inner: inner, tmpl: headTemplate(dst, src)}
	r.fd = e.socketIn(ns, unix.AF_PACKET, unix.SOCK_RAW, 0, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
			return fmt.Errorf("PACKET_VERSION: %w", err)
		}
		if bypass {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
				return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
			}
		}
		req := unix.TpacketReq{Block_size: txBlockSize, Block_nr: txFrames * txFrameSize / txBlockSize, Frame_size: txFrameSize, Frame_nr: txFrames}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_TX_RING: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex})
	})
	ring, err := unix.Mmap(r.fd, 0, txFrames*txFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		e.t.Fatalf("mmap TX ring: %v", err)
	}
	e.t.Cleanup(func() { _ = unix.Munmap(ring) })
	r.ring = ring
	return r
}

func (r *txRing) name() string {
	if r.bypass {
		return "TX ring V2 64/send +bypass"
	}
	return "TX ring V2 64/send"
}

func (r *txRing) hdr(i int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.ring[i*r.frameSize]))
}

// kick asks the kernel to send every frame marked SEND_REQUEST and waits
// for them (blocking socket, no MSG_DONTWAIT).
func (r *txRing) kick() error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.fd), 0, 0, 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("send (TX ring): %w", errno)
		}
		return nil
	}
}

// put fills the next frame with one packet of frame bytes (Ethernet +
// outer header + inner packet) and marks it SEND_REQUEST.
func (r *txRing) put(inner []byte, total int) error {
	h := r.hdr(r.next)
	for {
		st := atomic.LoadUint32(&h.Status)
		if st == unix.TP_STATUS_AVAILABLE {
			break
		}
		if st&unix.TP_STATUS_WRONG_FORMAT != 0 {
			return fmt.Errorf("TX ring frame %d: TP_STATUS_WRONG_FORMAT", r.next)
		}
		r.kicks++
		if err := r.kick(); err != nil {
			return err
		}
	}
	f := r.ring[r.next*r.frameSize+tpacket2Data : (r.next+1)*r.frameSize]
	r.id++
	putHead(f, &r.tmpl, r.id)
	copy(f[headLen:], inner)
	h.Len = uint32(total)
	atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
	r.next = (r.next + 1) % r.frames
	return nil
}

func (r *txRing) send() error {
	for _, p := range r.inner {
		if err := r.put(p, headLen+len(p)); err != nil {
			return err
		}
	}
	return r.kick()
}
