package underlay

import (
	"errors"
	"io"
	"net/netip"
)

// Message is one datagram of a batch.
type Message struct {
	Buf []byte // read: where to receive; write: what to send
	// Bufs, on write, replaces Buf with several buffers sent back to back
	// in one system call; with GSOSize the kernel cuts them into
	// datagrams of GSOSize bytes (UDP GSO), so each buffer but the last
	// must be exactly GSOSize long.
	Bufs [][]byte
	// GSOSize: on write, the UDP_SEGMENT size (0: one datagram); on read,
	// the size of the datagrams the kernel coalesced into Buf (UDP GRO), or
	// 0 when Buf holds one datagram.
	GSOSize int
	// TOS, on write when SetTOS, is the outer IPv4 TOS / IPv6 traffic
	// class for this message (an IP_TOS / IPV6_TCLASS control message);
	// on read, the one it arrived with when the socket reports it
	// (BatchConn.EnableRecvTOS), else 0.
	TOS    uint8
	SetTOS bool
	Addr   netip.AddrPort // read: the sender; write: the destination
	N      int            // read: bytes received
	Trunc  bool           // read: the datagram was larger than Buf
}

// Reader is the receiving side of an underlay socket, used by one
// goroutine. ReadBatch receives up to len(ms) datagrams (at least one; it
// blocks until then) and returns how many it filled. An error that
// IsTransient reports is about an earlier datagram, not the socket; a
// closed socket reports net.ErrClosed or os.ErrClosed.
type Reader interface {
	ReadBatch(ms []Message) (int, error)
}

// Writer is one goroutine's sending side. WriteBatch sends ms in as few
// system calls as the kernel allows and returns how many were sent; on an
// error, ms[n] is the datagram the kernel refused, and the caller decides
// whether to skip it and go on (IsGSORefused: send that run without GSO).
type Writer interface {
	WriteBatch(ms []Message) (int, error)
}

// Sender hands out Writers: several goroutines may send on one socket,
// each through its own.
type Sender interface {
	NewBatchWriter(size int) Writer
}

// Options describe the underlay sockets Open makes.
type Options struct {
	Local netip.Addr // the local underlay address
	// RawProto is the IP protocol of a raw-socket tunnel (IPIP 4, SIT 41,
	// GRE 47), or 0 for a UDP tunnel on Port.
	RawProto int
	Port     uint16
	Offload  bool // UDP GRO on receive, UDP GSO on send where the kernel has them
	// Outer header choices, as socket options (the kernel builds the
	// outer IP header): TTL; TOS and DF as in config (config.Inherit, or a
	// value; DF 0 clear, 1 set).
	TTL     uint8
	TOS, DF int
	// Batch is the most datagrams one ReadBatch or WriteBatch call takes
	// per system call.
	Batch int
	// InnerL3, for a UDP tunnel with more than one queue, is where the
	// inner IP header starts in the UDP payload (VXLAN 22: its header and
	// the inner Ethernet header; IP-in-UDP 0), so that the receiving
	// sockets spread flows by the inner flow (flowhash); negative: by the
	// outer 4-tuple, the kernel's SO_REUSEPORT hash.
	InnerL3 int
}

// Queue is the sockets of one device queue.
type Queue struct {
	Recv Reader // nil: another queue reads for this one (raw IP: one socket)
	Send Sender
}

// Sockets is what Open made.
type Sockets struct {
	Queues  []Queue
	GSO     bool        // the kernel takes UDP_SEGMENT on these sockets
	Closers []io.Closer // every socket, to close when the data plane stops
}

// errNotSupported is what the underlay answers where it needs Linux.
var errNotSupported = errors.New("underlay: not supported on this platform (batched socket I/O needs Linux)")
