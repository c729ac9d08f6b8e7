//go:build linux

package packetsock

// The receivers of B: raw recvmmsg and the TPACKET_V3 and V2 rings.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rxCount is what a receiver in B counted; updated atomically while it
// runs.
type rxCount struct {
	pkts    atomic.Int64 // inner packets (a GRO'd datagram counts its segments)
	dgrams  atomic.Int64 // datagrams / frames read
	calls   atomic.Int64 // recvmmsg calls that returned data, or poll calls that found a block
	trunc   atomic.Int64
	bad     atomic.Int64
	lastErr atomic.Value
}

// receiver reads B until stop is set and it has then seen idle twice.
type receiver interface {
	loop(stop *atomic.Bool, c *rxCount)
	name() string
}

// rawReceiver is B's raw IPv4 socket for protocol 4 (bound to 10.99.0.2),
// read with recvmmsg(64, MSG_WAITFORONE): blocks for the first datagram,
// then takes what is queued. 100 ms receive timeout to notice stop.
type rawReceiver struct {
	fd   int
	hdrs []mmsghdr
	iovs []unix.Iovec
	buf  []byte
}

func (e *env) openRawReceiver() *rawReceiver {
	fd := e.socketIn(e.nsB, unix.AF_INET, unix.SOCK_RAW, ipipProto, func(fd int) error {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		tv := unix.NsecToTimeval(100e6)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: outerDst})
	})
	r := &rawReceiver{fd: fd, hdrs: make([]mmsghdr, batch), iovs: make([]unix.Iovec, batch), buf: make([]byte, batch*maxDgram)}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.buf[i*maxDgram]
		r.iovs[i].SetLen(maxDgram)
	}
	return r
}

func (r *rawReceiver) name() string { return "raw recvmmsg-64" }

// read returns the datagrams of one recvmmsg call (nil on timeout).
func (r *rawReceiver) read() ([][]byte, error) {
	for i := range r.hdrs {
		h := &r.hdrs[i].hdr
		h.Name, h.Namelen = nil, 0
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control, h.Controllen, h.Flags = nil, 0, 0
	}
	n, err := mmsg(unix.SYS_RECVMMSG, r.fd, r.hdrs, unix.MSG_WAITFORONE)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return nil, nil
		}
		return nil, err
	}
	out := make([][]byte, n)
	for i := range n {
		out[i] = r.buf[i*maxDgram : i*maxDgram+int(r.hdrs[i].n)]
		if r.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
			out[i] = nil
		}
	}
	return out, nil
}

func (r *rawReceiver) loop(stop *atomic.Bool, c *rxCount) {
	idle := 0
	for {
		for i := range r.hdrs {
			h := &r.hdrs[i].hdr
			h.Name, h.Namelen = nil, 0
			h.Iov = &r.iovs[i]
			h.SetIovlen(1)
			h.Control, h.Controllen, h.Flags = nil, 0, 0
		}
		n, err := mmsg(unix.SYS_RECVMMSG, r.fd, r.hdrs, unix.MSG_WAITFORONE)
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				c.lastErr.Store(err)
			}
			if stop.Load() {
				if idle++; idle >= 1 {
					return
				}
			}
			continue
		}
		idle = 0
		c.calls.Add(1)
		c.dgrams.Add(int64(n))
		p := 0
		for i := range n {
			l := int(r.hdrs[i].n)
			if r.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
				c.trunc.Add(1)
			}
			if l < rxHdrs || r.buf[i*maxDgram+9] != ipipProto {
				c.bad.Add(1)
			}
			p += segments(l)
		}
		c.pkts.Add(int64(p))
	}
}

// rxRing is a TPACKET_V3 RX ring in B on vxb (protocol ETH_P_IP, classic
// BPF filter: IPv4 protocol 4 only), read block by block: poll(POLLIN) only
// when the current block is still the kernel's. The kernel still hands
// every packet to its IP stack too; a raw socket for protocol 4 with a
// drop-all filter (openRaw) keeps it from answering protocol-unreachable.
type rxRing struct {
	fd        int
	ring      []byte
	blockSize int
	blocks    int
	tov       int
	cur       int
	all       bool   // bound to ETH_P_ALL (else ETH_P_IP)
	close     func() // unmaps and closes; idempotent
}

func (e *env) openRxRing(blockSize, blocks, tovMs int, all bool) *rxRing {
	r := &rxRing{blockSize: blockSize, blocks: blocks, tov: tovMs, all: all}
	proto := uint16(unix.ETH_P_IP)
	if all {
		proto = unix.ETH_P_ALL
	}
	r.fd = e.socketIn(e.nsB, unix.AF_PACKET, unix.SOCK_RAW, 0, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
			return fmt.Errorf("PACKET_VERSION: %w", err)
		}
		req := unix.TpacketReq3{Block_size: uint32(blockSize), Block_nr: uint32(blocks), Frame_size: 2048,
			Frame_nr: uint32(blockSize / 2048 * blocks), Retire_blk_tov: uint32(tovMs)}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING: %w", err)
		}
		// ldb [23] (IPv4 protocol behind a 14-byte Ethernet header);
		// jeq #4; ret #262144 else ret #0. With ETH_P_ALL, first drop
		// B's own outgoing frames (ld pkttype; jeq OUTGOING).
		var f []unix.SockFilter
		if all {
			f = append(f,
				unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0xfffff000 + 4}, // SKF_AD_OFF + SKF_AD_PKTTYPE
				unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 3, Jf: 0, K: unix.PACKET_OUTGOING})
		}
		f = append(f, []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: ethLen + 9},
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: ipipProto},
			{Code: unix.BPF_RET | unix.BPF_K, K: 1 << 18},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		}...)
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}); err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: e.ifB})
	})
	ring, err := unix.Mmap(r.fd, 0, blockSize*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		e.t.Fatalf("mmap RX ring: %v", err)
	}
	r.ring = ring
	r.close = func() {
		if r.ring != nil {
			_ = unix.Munmap(r.ring)
			r.ring = nil
		}
		e.closeNow(r.fd)
	}
	e.t.Cleanup(r.close)
	return r
}

func (r *rxRing) name() string {
	p := "ETH_P_IP"
	if r.all {
		p = "ETH_P_ALL"
	}
	return fmt.Sprintf("TPACKET_V3 ring %dKiB x %d, tov %dms, %s", r.blockSize>>10, r.blocks, r.tov, p)
}

func (r *rxRing) block(i int) *unix.TpacketHdrV1 {
	bd := (*unix.TpacketBlockDesc)(unsafe.Pointer(&r.ring[i*r.blockSize]))
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&bd.Hdr[0]))
}

// frames walks one block the kernel handed over, calling fn for each
// packet's Ethernet frame and its original length.
func (r *rxRing) frames(i int, fn func(frame []byte, origLen int)) int {
	h := r.block(i)
	base := i * r.blockSize
	off := int(h.Offset_to_first_pkt)
	n := int(h.Num_pkts)
	for range n {
		ph := (*unix.Tpacket3Hdr)(unsafe.Pointer(&r.ring[base+off]))
		m := base + off + int(ph.Mac)
		fn(r.ring[m:m+int(ph.Snaplen)], int(ph.Len))
		off += int(ph.Next_offset)
	}
	return n
}

func (r *rxRing) release(i int) {
	atomic.StoreUint32(&r.block(i).Block_status, unix.TP_STATUS_KERNEL)
}

func (r *rxRing) ready(i int) bool {
	return atomic.LoadUint32(&r.block(i).Block_status)&unix.TP_STATUS_USER != 0
}

func (r *rxRing) loop(stop *atomic.Bool, c *rxCount) {
	idle := 0
	pfd := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
	for {
		if !r.ready(r.cur) {
			n, err := unix.Poll(pfd, 100)
			if err != nil && !errors.Is(err, unix.EINTR) {
				c.lastErr.Store(err)
			}
			if n <= 0 && stop.Load() {
				if idle++; idle >= 1 {
					return
				}
			}
			if n > 0 {
				c.calls.Add(1)
			}
			continue
		}
		idle = 0
		p, d := 0, 0
		r.frames(r.cur, func(f []byte, orig int) {
			d++
			if len(f) < orig {
				c.trunc.Add(1)
			}
			if len(f) < ethLen+rxHdrs || f[ethLen+9] != ipipProto {
				c.bad.Add(1)
			}
			p += segments(orig - ethLen)
		})
		r.release(r.cur)
		r.cur = (r.cur + 1) % r.blocks
		c.dgrams.Add(int64(d))
		c.pkts.Add(int64(p))
	}
}

// stats is PACKET_STATISTICS (reading resets it): packets, drops, freezes.
func (r *rxRing) stats() (uint32, uint32, uint32) {
	s, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, 0, 0
	}
	return s.Packets, s.Drops, s.Freeze_q_cnt
}

// rxRingV2 is a TPACKET_V2 RX ring in B on vxb (ETH_P_IP, the same filter
// as rxRing): one frame per packet with its own status word, so a frame is
// the reader's as soon as it is written; the reader polls only when the
// next frame is still the kernel's (one wake per packet when idle, many
// frames per wake under load).
type rxRingV2 struct {
	fd        int
	ring      []byte
	frameSize int
	frames    int
	cur       int
	close     func()
}

func (e *env) openRxRingV2(frames int) *rxRingV2 {
	const fs = 2048 // tp_mac (TPACKET_ALIGN(52) + 16 - 14 = 66 rounded) + 1414 fits
	r := &rxRingV2{frameSize: fs, frames: frames}
	r.fd = e.socketIn(e.nsB, unix.AF_PACKET, unix.SOCK_RAW, 0, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
			return fmt.Errorf("PACKET_VERSION: %w", err)
		}
		req := unix.TpacketReq{Block_size: 1 << 16, Block_nr: uint32(frames * fs >> 16), Frame_size: fs, Frame_nr: uint32(frames)}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING: %w", err)
		}
		f := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: ethLen + 9},
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: ipipProto},
			{Code: unix.BPF_RET | unix.BPF_K, K: 1 << 18},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}); err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: e.ifB})
	})
	ring, err := unix.Mmap(r.fd, 0, frames*fs, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		e.t.Fatalf("mmap V2 RX ring: %v", err)
	}
	r.ring = ring
	r.close = func() {
		if r.ring != nil {
			_ = unix.Munmap(r.ring)
			r.ring = nil
		}
		e.closeNow(r.fd)
	}
	e.t.Cleanup(r.close)
	return r
}

func (r *rxRingV2) name() string { return fmt.Sprintf("TPACKET_V2 ring %d frames", r.frames) }

func (r *rxRingV2) hdr(i int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.ring[i*r.frameSize]))
}

func (r *rxRingV2) ready() bool {
	return atomic.LoadUint32(&r.hdr(r.cur).Status)&unix.TP_STATUS_USER != 0
}

// take hands the current frame (Ethernet frame, original length) to fn
// and gives it back to the kernel.
func (r *rxRingV2) take(fn func(frame []byte, origLen int)) {
	h := r.hdr(r.cur)
	m := r.cur*r.frameSize + int(h.Mac)
	fn(r.ring[m:m+int(h.Snaplen)], int(h.Len))
	atomic.StoreUint32(&h.Status, unix.TP_STATUS_KERNEL)
	r.cur = (r.cur + 1) % r.frames
}

func (r *rxRingV2) loop(stop *atomic.Bool, c *rxCount) {
	idle := 0
	pfd := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
	for {
		if !r.ready() {
			n, err := unix.Poll(pfd, 100)
			if err != nil && !errors.Is(err, unix.EINTR) {
				c.lastErr.Store(err)
			}
			if n <= 0 && stop.Load() {
				if idle++; idle >= 1 {
					return
				}
			}
			if n > 0 {
				c.calls.Add(1)
			}
			continue
		}
		idle = 0
		p, d := 0, 0
		for d < r.frames && r.ready() {
			r.take(func(f []byte, orig int) {
				d++
				if len(f) < orig {
					c.trunc.Add(1)
				}
				if len(f) < ethLen+rxHdrs || f[ethLen+9] != ipipProto {
					c.bad.Add(1)
				}
				p += segments(orig - ethLen)
			})
		}
		c.dgrams.Add(int64(d))
		c.pkts.Add(int64(p))
	}
}

// stats is PACKET_STATISTICS (reading resets it): packets, drops.
func (r *rxRingV2) stats() (uint32, uint32) {
	s, err := unix.GetsockoptTpacketStats(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, 0
	}
	return s.Packets, s.Drops
}
