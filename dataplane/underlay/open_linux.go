package underlay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"tunnelplane/dataplane/flowhash"

	"golang.org/x/sys/unix"
)

// Open opens the sockets the tunnel runs over, for queues device queues.
//
// UDP (VXLAN, IP-in-UDP): one receiving socket per queue on the tunnel
// port, joined by SO_REUSEPORT, so the kernel spreads incoming flows over
// the queues by their 4-tuple hash. With more than one queue, each queue
// also sends from a socket of its own on an ephemeral port: the TUN hands a
// flow always to the same queue, so each flow keeps one source port, while
// different queues give the peer different source ports to spread on (RFC
// 7348's source-port entropy, at queue granularity).
//
// Raw IP (IPIP, SIT, GRE): a raw socket receives a copy of every packet of
// its protocol, so there is one socket, read by queue 0; every queue sends
// through a socket of its own that receives nothing (sendSocket).
//
// On an error every socket it opened is closed again.
func Open(o Options, queues int, log *slog.Logger) (*Sockets, error) {
	s := &Sockets{Queues: make([]Queue, queues)}
	if err := s.open(o, log); err != nil {
		for _, c := range s.Closers {
			c.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Sockets) open(o Options, log *slog.Logger) error {
	local := o.Local
	family := "4"
	if local.Is6() {
		family = "6"
	}
	type sock interface {
		io.Closer
		syscall.Conn
	}
	// batchConn takes an open socket over: closed with the data plane,
	// outer header options set, batched I/O.
	batchConn := func(sk sock) (*BatchConn, error) {
		s.Closers = append(s.Closers, sk)
		if err := setOptions(sk, o); err != nil {
			return nil, err
		}
		c, err := NewBatchConn(sk, o.Batch, o.RawProto != 0)
		if c != nil {
			c.v6 = local.Is6()
		}
		return c, err
	}
	open := func(reuse bool, port uint16) (*BatchConn, error) {
		var (
			sk  sock
			err error
		)
		lc := net.ListenConfig{}
		if reuse {
			lc.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
				return serr
			}
		}
		if proto := o.RawProto; proto != 0 {
			var pc net.PacketConn
			pc, err = lc.ListenPacket(context.Background(), fmt.Sprintf("ip%s:%d", family, proto), local.String())
			if err == nil {
				sk = pc.(*net.IPConn)
			}
		} else {
			var pc net.PacketConn
			pc, err = lc.ListenPacket(context.Background(), "udp"+family, netip.AddrPortFrom(local, port).String())
			if err == nil {
				sk = pc.(*net.UDPConn)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("underlay socket on %s: %w", local, err)
		}
		return batchConn(sk)
	}
	// Sending goes through sockets of its own, outside the netpoller
	// (sendSocket says why).
	openSend := func() (*BatchConn, error) {
		f, err := sendSocket(local, o.RawProto)
		if err != nil {
			return nil, err
		}
		return batchConn(f)
	}
	qs := s.Queues
	if o.RawProto != 0 {
		c, err := open(false, 0)
		if err != nil {
			return err
		}
		qs[0].Recv = c
		for i := range qs {
			if qs[i].Send, err = openSend(); err != nil {
				return err
			}
		}
		return nil
	}
	var first *BatchConn
	for i := range qs {
		c, err := open(len(qs) > 1, o.Port)
		if err != nil {
			return err
		}
		qs[i].Recv, qs[i].Send = c, c
		if err := c.EnableRecvTOS(); err != nil {
			log.Warn("the outer TOS of received datagrams is not reported: an outer ECN CE mark is not passed on", "err", err)
		}
		if o.Offload {
			if err := c.EnableGRO(); err != nil {
				log.Info("UDP GRO not available", "err", err)
			}
		}
		if len(qs) > 1 {
			if c, err = openSend(); err != nil {
				return err
			}
			qs[i].Send = c
		}
		if first == nil {
			first = c
		}
	}
	if o.Offload {
		s.GSO = first.SupportsGSO()
	}
	if len(qs) > 1 && o.InnerL3 >= 0 {
		if err := spreadByInnerFlow(qs[0].Recv.(*BatchConn), o.InnerL3, len(qs)); err != nil {
			log.Warn("underlay sockets spread flows by the outer 4-tuple only: two flows may share a queue while another idles",
				"err", err)
		}
	}
	return nil
}

// spreadByInnerFlow attaches to the receiving sockets' SO_REUSEPORT group
// (through c, its first) a program that hands each datagram to the socket
// of the queue where the kernel steers the inner flow's answers
// (flowhash.Program on the reversed flow): the queue that writes a flow
// to the device then finds its ACKs and replies on that same queue
// (dataplane/devreader.go), and every flow is on one queue whatever the
// sender's outer source ports, which the kernel's 4-tuple hash may put
// all on one socket. The sockets were opened in queue order, which is
// the group's order.
func spreadByInnerFlow(c *BatchConn, innerL3, queues int) error {
	fd, err := flowhash.Load(flowhash.Program(int32(innerL3), true, uint32(queues)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var serr error
	if err := c.rc.Control(func(s uintptr) {
		serr = unix.SetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, fd)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_ATTACH_REUSEPORT_EBPF: %w", serr)
	}
	return nil
}

// setOptions applies the outer TTL, TOS and DF choices and larger socket
// buffers. The kernel builds the outer IP header, so these are socket
// options rather than header fields.
func setOptions(sock syscall.Conn, o Options) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	v6 := o.Local.Is6()
	var serr error
	set := func(level, opt, v int) {
		if serr == nil {
			rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) })
		}
	}
	// Best effort: without CAP_NET_ADMIN the kernel caps these at rmem_max.
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	})
	if v6 {
		set(unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, int(o.TTL))
		if o.TOS >= 0 {
			set(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, o.TOS)
		}
	} else {
		set(unix.IPPROTO_IP, unix.IP_TTL, int(o.TTL))
		if o.TOS >= 0 {
			set(unix.IPPROTO_IP, unix.IP_TOS, o.TOS)
		}
		switch o.DF {
		case 1:
			set(unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		case 0:
			set(unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		}
	}
	if serr != nil {
		return fmt.Errorf("underlay socket options: %w", serr)
	}
	return nil
}
