package underlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Why not golang.org/x/net's ReadBatch/WriteBatch: they parse every
// received source address into a freshly allocated *net.UDPAddr (two
// allocations per datagram), which breaks the data plane's no-allocation
// rule. These few lines call recvmmsg/sendmmsg directly over the socket's
// RawConn, so Go's netpoller still parks the goroutine when the socket has
// nothing to give, and all headers, iovecs and socket addresses are
// allocated once per connection.

var (
	_ Reader = (*BatchConn)(nil)
	_ Sender = (*BatchConn)(nil)
	_ Writer = (*BatchWriter)(nil)
)

// NewBatchWriter is NewWriter as a Sender.
func (c *BatchConn) NewBatchWriter(size int) Writer { return c.NewWriter(size) }

// maxIovecs bounds the buffers one WriteBatch call hands to the kernel.
const maxIovecs = 1024

// oobSize holds a UDP_GRO and an IP_TOS/IPV6_TCLASS control message (read),
// or a UDP_SEGMENT and an IP_TOS/IPV6_TCLASS one (write).
var oobSize = 2 * unix.CmsgSpace(4)

// mmsghdr mirrors struct mmsghdr. Go pads the struct to the alignment of
// unix.Msghdr as C does: 64 bytes on 64-bit Linux, 32 on 32-bit.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// BatchConn does batched datagram I/O on one socket. A BatchConn is used
// by one reader goroutine and one writer goroutine: reading and writing
// keep separate scratch state.
type BatchConn struct {
	rc  syscall.RawConn
	rd  batchState
	wr  *BatchWriter
	raw bool // raw IP socket: addresses carry no port
	v6  bool // IPv6 socket: the traffic class goes in IPV6_TCLASS
}

// BatchWriter is one goroutine's sending side of a BatchConn: several
// goroutines may send on one socket, each through its own BatchWriter.
type BatchWriter struct {
	c *BatchConn
	s batchState
}

type batchState struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	oob   []byte                  // oobSize bytes per message
	count int
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool // allocated once: a method value per call would escape
}

// NewBatchConn wraps a socket for batches of up to size datagrams.
func NewBatchConn(sc syscall.Conn, size int, raw bool) (*BatchConn, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &BatchConn{rc: rc, raw: raw}
	c.rd.init(size, size)
	c.rd.fn = func(fd uintptr) bool { return c.rd.call(fd, unix.SYS_RECVMMSG) }
	c.wr = c.NewWriter(size)
	return c, nil
}

func (s *batchState) init(size, iovecs int) {
	s.hdrs = make([]mmsghdr, size)
	s.iovs = make([]unix.Iovec, iovecs)
	s.names = make([]unix.RawSockaddrInet6, size)
	s.oob = make([]byte, size*oobSize)
}

// NewWriter returns a sending side for one more goroutine.
func (c *BatchConn) NewWriter(size int) *BatchWriter {
	w := &BatchWriter{c: c}
	w.s.init(size, max(size, maxIovecs))
	w.s.fn = func(fd uintptr) bool { return w.s.call(fd, unix.SYS_SENDMMSG) }
	return w
}

func (s *batchState) call(fd uintptr, trap uintptr) bool {
	n, _, errno := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.count), 0, 0, 0)
	if errno == unix.EINTR {
		// Again at once: a send socket outside the netpoller (sendSocket)
		// has no poller to wait on.
		return s.call(fd, trap)
	}
	if errno == unix.EAGAIN {
		return false // not ready: let the netpoller wait
	}
	s.n, s.errno = int(n), errno
	return true
}

// ReadBatch receives up to len(ms) datagrams (at least one; it blocks until
// then) and returns how many it filled.
func (c *BatchConn) ReadBatch(ms []Message) (int, error) {
	s := &c.rd
	if len(ms) > len(s.hdrs) {
		ms = ms[:len(s.hdrs)]
	}
	for i := range ms {
		s.iovs[i].Base = unsafe.SliceData(ms[i].Buf)
		s.iovs[i].SetLen(len(ms[i].Buf))
		h := &s.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Control = &s.oob[i*oobSize]
		h.SetControllen(oobSize)
		h.Flags = 0
	}
	s.count = len(ms)
	if err := c.rc.Read(s.fn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", s.errno)
	}
	for i := 0; i < s.n; i++ {
		ms[i].N = int(s.hdrs[i].len)
		ms[i].Trunc = s.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0
		ms[i].Addr = sockaddrToAddrPort(&s.names[i])
		ms[i].GSOSize, ms[i].TOS = 0, 0
		if s.hdrs[i].hdr.Controllen > 0 {
			ms[i].GSOSize, ms[i].TOS = parseControl(s.oob[i*oobSize : (i+1)*oobSize])
		}
	}
	return s.n, nil
}

// WriteBatch sends ms in as few system calls as the kernel allows. It
// returns how many were sent; on an error, ms[n] is the datagram the kernel
// refused, and the caller decides whether to skip it and go on.
func (c *BatchConn) WriteBatch(ms []Message) (int, error) { return c.wr.WriteBatch(ms) }

// WriteBatch is BatchConn.WriteBatch through this writer's own scratch state.
func (w *BatchWriter) WriteBatch(ms []Message) (int, error) {
	s, c := &w.s, w.c
	sent := 0
	for sent < len(ms) {
		chunk := ms[sent:]
		if len(chunk) > len(s.hdrs) {
			chunk = chunk[:len(s.hdrs)]
		}
		nio := 0
		for i := range chunk {
			m := &chunk[i]
			bufs := m.Bufs
			if bufs == nil {
				bufs = [][]byte{m.Buf}[:1:1]
			}
			if nio+len(bufs) > len(s.iovs) {
				chunk = chunk[:i]
				break
			}
			h := &s.hdrs[i].hdr
			h.Iov = &s.iovs[nio]
			h.SetIovlen(len(bufs))
			for _, b := range bufs {
				s.iovs[nio].Base = unsafe.SliceData(b)
				s.iovs[nio].SetLen(len(b))
				nio++
			}
			if m.Addr.IsValid() {
				h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
				h.Namelen = addrPortToSockaddr(m.Addr, &s.names[i])
			} else {
				h.Name, h.Namelen = nil, 0 // a bound packet socket (OpenPacketSend)
			}
			h.Control, h.Controllen, h.Flags = nil, 0, 0
			oob := s.oob[i*oobSize : (i+1)*oobSize]
			clen := 0
			if m.GSOSize > 0 {
				putSegmentCmsg(oob, m.GSOSize)
				clen = unix.CmsgSpace(2)
			}
			if m.SetTOS {
				clen += putTOSCmsg(oob[clen:], m.TOS, c.v6)
			}
			if clen > 0 {
				h.Control = &oob[0]
				h.SetControllen(clen)
			}
		}
		s.count = len(chunk)
		if err := c.rc.Write(s.fn); err != nil {
			return sent, err
		}
		if s.errno != 0 {
			return sent, fmt.Errorf("sendmmsg: %w", s.errno)
		}
		sent += s.n
	}
	return sent, nil
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

func addrPortToSockaddr(ap netip.AddrPort, sa *unix.RawSockaddrInet6) uint32 {
	a := ap.Addr()
	if a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return unix.SizeofSockaddrInet6
}

// IsTransient tells errors a receive loop must survive: ICMP errors the
// kernel queues on the socket (ECONNREFUSED for port unreachable, and the
// like) say something about one earlier datagram, not about the socket.
func IsTransient(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EMSGSIZE,
		unix.ENOBUFS, unix.EPERM, unix.EACCES, unix.EINVAL, unix.ENOMEM, unix.EHOSTDOWN, unix.ENETDOWN:
		return true
	}
	return false
}

// IsGSORefused reports whether a WriteBatch error says the path cannot
// segment a UDP_SEGMENT send (EIO): send the run as single datagrams.
func IsGSORefused(err error) bool { return errors.Is(err, unix.EIO) }

// putSegmentCmsg writes a UDP_SEGMENT control message (a uint16 size).
func putSegmentCmsg(oob []byte, size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
}

// putTOSCmsg writes an IP_TOS (or IPV6_TCLASS) control message and returns
// its space.
func putTOSCmsg(oob []byte, tos uint8, v6 bool) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
	if v6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	}
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = int32(tos)
	return unix.CmsgSpace(4)
}

// parseControl returns the segment size of a UDP_GRO control message in
// oob (0 when there is none) and the TOS / traffic class of an IP_TOS or
// IPV6_TCLASS one (0 when there is none).
func parseControl(oob []byte) (gso int, tos uint8) {
	for len(oob) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if uint64(h.Len) < uint64(unix.CmsgLen(0)) || uint64(h.Len) > uint64(len(oob)) {
			return gso, tos
		}
		data := oob[unix.CmsgLen(0):h.Len]
		switch {
		case h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			gso = int(*(*int32)(unsafe.Pointer(&data[0])))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TOS && len(data) >= 1:
			tos = data[0]
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_TCLASS && len(data) >= 4:
			tos = uint8(*(*int32)(unsafe.Pointer(&data[0])))
		}
		oob = oob[min(len(oob), unix.CmsgSpace(int(h.Len)-unix.CmsgLen(0))):]
	}
	return gso, tos
}

// EnableRecvTOS asks the kernel for each datagram's TOS / traffic class
// (IP_RECVTOS, IPV6_RECVTCLASS); ReadBatch then reports it in TOS, for
// the decapsulation of ECN (encap.ECNDecap).
func (c *BatchConn) EnableRecvTOS() error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		if c.v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
		}
	})
	return errors.Join(err, serr)
}

// EnableGRO asks the kernel to coalesce received datagrams of one flow
// (UDP_GRO); ReadBatch then reports their size in GSOSize.
func (c *BatchConn) EnableGRO() error { return c.SetGRO(true) }

// SetGRO turns the coalescing of EnableGRO on or off. Off matters where
// something before the socket must see each datagram on its own: the
// kernel path's decap program runs after GRO, and a coalesced batch is
// no tunnel packet it can strip.
func (c *BatchConn) SetGRO(on bool) error {
	v := 0
	if on {
		v = 1
	}
	var serr error
	err := c.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, v) })
	return errors.Join(err, serr)
}

// SupportsGSO reports whether the kernel knows UDP_SEGMENT on this socket.
// LocalPort is the socket's local UDP port (0 for a raw socket, or when
// the kernel does not say).
func (c *BatchConn) LocalPort() uint16 {
	var port uint16
	c.rc.Control(func(fd uintptr) {
		switch sa, _ := unix.Getsockname(int(fd)); a := sa.(type) {
		case *unix.SockaddrInet4:
			port = uint16(a.Port)
		case *unix.SockaddrInet6:
			port = uint16(a.Port)
		}
	})
	return port
}

func (c *BatchConn) SupportsGSO() bool {
	var serr error
	err := c.rc.Control(func(fd uintptr) { _, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT) })
	return err == nil && serr == nil
}
