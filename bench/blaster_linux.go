package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// drainTime is how long the receiver keeps counting after the sender stops.
const drainTime = 300 * time.Millisecond

// RunUDP runs the UDP blaster (see UDPOptions). The sockets are created
// inside the namespaces through NS.Do and then driven from ordinary
// goroutines; recvmmsg and sendmmsg go through the sockets' RawConn, so the
// netpoller parks a goroutine whose socket is not ready.
func RunUDP(ctx context.Context, o UDPOptions) (UDPResult, error) {
	o.defaults()
	res := UDPResult{Payload: o.Payload}
	if !topo.Allowed(o.Dst) || !o.Dst.Is4() {
		return res, fmt.Errorf("udp: refusing destination %s (IPv4 in the project's ranges only)", o.Dst)
	}
	dst := &net.UDPAddr{IP: net.IP(o.Dst.AsSlice()), Port: o.Port}

	var rx, tx *net.UDPConn
	if err := o.To.Do(func() (err error) {
		rx, err = net.ListenUDP("udp4", dst)
		return err
	}); err != nil {
		return res, fmt.Errorf("udp receiver: %w", err)
	}
	defer rx.Close()
	rx.SetReadBuffer(8 << 20)
	forceBuf(rx, unix.SO_RCVBUFFORCE, 8<<20)
	if err := o.From.Do(func() (err error) {
		tx, err = net.DialUDP("udp4", nil, dst)
		return err
	}); err != nil {
		return res, fmt.Errorf("udp sender: %w", err)
	}
	defer tx.Close()

	type rxResult struct {
		n   int64
		err error
	}
	rxDone := make(chan rxResult, 1)
	go func() {
		n, err := receive(rx, o.Payload, o.Batch)
		rxDone <- rxResult{n, err}
	}()

	start := time.Now()
	end := start.Add(o.Duration)
	if dl, ok := ctx.Deadline(); ok && dl.Before(end) {
		end = dl
	}
	stop := context.AfterFunc(ctx, func() { tx.SetWriteDeadline(time.Now()) })
	sent, err := send(tx, o.Payload, o.Batch, end)
	stop()
	res.Seconds = time.Since(start).Seconds()
	res.Sent = sent

	time.Sleep(drainTime)
	rx.SetReadDeadline(time.Now())
	r := <-rxDone
	res.Received = r.n
	res.finish()
	if err == nil {
		err = r.err
	}
	if err == nil {
		err = ctx.Err()
	}
	return res, err
}

func forceBuf(c *net.UDPConn, opt, size int) {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, size) })
	}
}

// mmsgBatch is a batch of message headers, one iovec each.
type mmsgBatch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
}

func newBatch(bufs [][]byte) *mmsgBatch {
	b := &mmsgBatch{hdrs: make([]unix.Mmsghdr, len(bufs)), iovs: make([]unix.Iovec, len(bufs))}
	for i, buf := range bufs {
		b.iovs[i].Base = &buf[0]
		b.iovs[i].SetLen(len(buf))
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	return b
}

// mmsg calls sendmmsg or recvmmsg on the batch through rc. It returns the
// number of messages moved.
func (b *mmsgBatch) mmsg(rc syscall.RawConn, trap uintptr, write bool) (int, error) {
	var n int
	var errno syscall.Errno
	fn := func(fd uintptr) bool {
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		n, errno = int(r), e
		return true
	}
	var err error
	if write {
		err = rc.Write(fn)
	} else {
		err = rc.Read(fn)
	}
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

func send(c *net.UDPConn, payload, batch int, end time.Time) (int64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, payload)
	copy(buf, udpMagic[:])
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = buf // every datagram is the same bytes
	}
	b := newBatch(bufs)
	c.SetWriteDeadline(end)
	var sent int64
	for time.Now().Before(end) {
		n, err := b.mmsg(rc, unix.SYS_SENDMMSG, true)
		switch {
		case err == nil:
			sent += int64(n)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return sent, nil
		case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.ENOBUFS):
			// An ICMP port-unreachable from before the receiver was ready,
			// or a full device queue: the batch did not go; go on.
			time.Sleep(50 * time.Microsecond)
		default:
			return sent, fmt.Errorf("sendmmsg: %w", err)
		}
	}
	return sent, nil
}

func receive(c *net.UDPConn, payload, batch int) (int64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	b := newBatch(bufs)
	var got int64
	for {
		n, err := b.mmsg(rc, unix.SYS_RECVMMSG, false)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
			return got, nil
		}
		if err != nil {
			return got, fmt.Errorf("recvmmsg: %w", err)
		}
		for i := 0; i < n; i++ {
			if int(b.hdrs[i].Len) == payload && string(bufs[i][:len(udpMagic)]) == string(udpMagic[:]) {
				got++
			}
		}
	}
}
