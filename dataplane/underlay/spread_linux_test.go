package underlay

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/flowhash"

	"golang.org/x/sys/unix"
)

// TestSpreadByInnerFlow opens three queues' sockets on a VXLAN port and
// sends them VXLAN datagrams of 48 inner TCP flows from one outer source
// port (which the kernel's 4-tuple hash would give to one socket): each
// flow must arrive at the queue flowhash names for its answers, and the
// flows must use every queue.
func TestSpreadByInnerFlow(t *testing.T) {
	topo.RequireRoot(t)
	ns, err := topo.BuildNS("spread")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	const queues, flows = 3, 48
	local := netip.MustParseAddr("127.0.0.1")
	var socks *Sockets
	err = ns.Do(func() error {
		socks, err = Open(Options{Local: local, Port: 4789, Batch: 8, InnerL3: 22, TTL: 64, TOS: -1, DF: -1}, queues, slog.Default())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range socks.Closers {
			c.Close()
		}
	}()
	inner := func(sport uint16) []byte {
		p := make([]byte, 8+14+20+20)
		p[0] = 0x08 // VXLAN: VNI present
		binary.BigEndian.PutUint16(p[8+12:], 0x0800)
		ip := p[22:]
		ip[0], ip[9] = 0x45, 6
		binary.BigEndian.PutUint16(ip[2:], 40)
		copy(ip[12:], []byte{10, 200, 0, 1})
		copy(ip[16:], []byte{10, 200, 1, 1})
		binary.BigEndian.PutUint16(ip[20:], sport)
		binary.BigEndian.PutUint16(ip[22:], 5201)
		return p
	}
	err = ns.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4789})
		if err != nil {
			return err
		}
		defer c.Close()
		for f := range flows {
			if _, err := c.Write(inner(uint16(40000 + 2*f))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]int{}
	got := 0
	time.Sleep(50 * time.Millisecond) // loopback delivers at once; a margin all the same
	for q := range queues {
		c := socks.Queues[q].Recv.(*BatchConn)
		buf := make([]byte, 2048)
		for {
			n := -1
			c.rc.Control(func(fd uintptr) {
				n, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			})
			if n <= 0 {
				break // this queue's socket is empty
			}
			p := buf[:n]
			if want := flowhash.Queue(p, 22, queues, true); want != q {
				t.Errorf("flow from port %d arrived at queue %d, want %d", binary.BigEndian.Uint16(p[42:]), q, want)
			}
			used[q]++
			got++
		}
	}
	if got != flows {
		t.Fatalf("received %d of %d datagrams", got, flows)
	}
	if len(used) != queues {
		t.Errorf("flows on %d of %d queues: %v", len(used), queues, used)
	}
}
