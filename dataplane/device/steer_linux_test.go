package device

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/flowhash"
)

// TestSteeringKeepsFlowsOnOneQueue sends datagrams of many UDP flows into
// a two-queue TUN and TAP device with the steering program attached, and
// reads both queues: every flow must arrive whole on exactly one queue,
// and the flows must use both.
func TestSteeringKeepsFlowsOnOneQueue(t *testing.T) {
	topo.RequireRoot(t)
	for _, tc := range []struct {
		name string
		tap  bool
		dst  netip.Addr
		// evenSrc: the flows differ only in their source port, and every
		// one is even, as connect()'s ephemeral ports are on Linux (TCP
		// streams to one server, like iperf3 -P 4)
		evenSrc bool
	}{
		{"tun-ipv4", false, netip.MustParseAddr("10.200.9.2"), false},
		{"tun-ipv6", false, netip.MustParseAddr("fd00:200:9::2"), false},
		{"tap-ipv4", true, netip.MustParseAddr("10.200.9.2"), false},
		{"tun-ipv4-even-source-ports", false, netip.MustParseAddr("10.200.9.2"), true},
		{"tun-ipv6-even-source-ports", false, netip.MustParseAddr("fd00:200:9::2"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := topo.BuildNS("steer")
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			const name = "tpsteer0"
			var fds [2]int
			err = ns.Do(func() error {
				flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE)
				if tc.tap {
					flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE
				}
				for i := range fds {
					fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
					if err != nil {
						return err
					}
					fds[i] = fd
					ifr, _ := unix.NewIfreq(name)
					ifr.SetUint16(flags)
					if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
						return fmt.Errorf("TUNSETIFF: %w", err)
					}
				}
				l2 := int32(0)
				if tc.tap {
					l2 = 14
				}
				return setSteering(fds[0], l2)
			})
			defer func() {
				for _, fd := range fds {
					if fd > 0 {
						unix.Close(fd)
					}
				}
			}()
			if err != nil {
				t.Fatal(err)
			}
			local := netip.MustParsePrefix("10.200.9.1/24")
			if tc.dst.Is6() {
				local = netip.MustParsePrefix("fd00:200:9::1/64")
			}
			if err := ns.AddAddr(name, local); err != nil {
				t.Fatal(err)
			}
			if err := ns.LinkUp(name); err != nil {
				t.Fatal(err)
			}
			if tc.tap {
				link, err := ns.Handle().LinkByName(name)
				if err != nil {
					t.Fatal(err)
				}
				n := &netlink.Neigh{LinkIndex: link.Attrs().Index, IP: tc.dst.AsSlice(), State: netlink.NUD_PERMANENT,
					HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0x09, 0x02}}
				if err := ns.Handle().NeighAdd(n); err != nil {
					t.Fatal(err)
				}
			}
			const flows, perFlow = 32, 8
			err = ns.Do(func() error {
				for f := range flows {
					var laddr *net.UDPAddr
					dport := uint16(9000 + f)
					if tc.evenSrc {
						laddr, dport = &net.UDPAddr{Port: 40000 + 2*f}, 9000
					}
					c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.dst, dport)))
					if err != nil {
						return err
					}
					for range perFlow {
						if _, err := c.Write([]byte("steer")); err != nil {
							c.Close()
							return err
						}
					}
					c.Close()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Read both queues until flows*perFlow datagrams arrived (or 5 s).
			queueOf := map[uint16]int{}
			count := map[uint16]int{}
			used := [2]int{}
			got := 0
			buf := make([]byte, 2048)
			deadline := time.Now().Add(5 * time.Second)
			for got < flows*perFlow && time.Now().Before(deadline) {
				idle := true
				for q, fd := range fds {
					n, err := unix.Read(fd, buf)
					if err != nil || n <= 0 {
						continue
					}
					idle = false
					p := buf[:n]
					l2 := 0
					if tc.tap {
						l2 = 14
					}
					if want := flowhash.Queue(p, l2, len(fds), false); want != q && len(p) > l2 {
						if _, _, ok := udpPorts(p[l2:]); ok {
							t.Errorf("packet on queue %d, flowhash.Queue says %d", q, want)
						}
					}
					if tc.tap {
						if len(p) < 14 {
							continue
						}
						p = p[14:]
					}
					sport, dport, ok := udpPorts(p)
					if tc.evenSrc {
						// the flow's key: its source port's index
						ok = ok && dport == 9000 && sport >= 40000
						dport = 9000 + (sport-40000)/2
					}
					if !ok || dport < 9000 || dport >= 9000+flows {
						continue // the kernel's own chatter (MLD, router solicitations)
					}
					got++
					count[dport]++
					used[q]++
					if prev, seen := queueOf[dport]; seen && prev != q {
						t.Errorf("flow to port %d arrived on queue %d and queue %d", dport, prev, q)
					}
					queueOf[dport] = q
				}
				if idle {
					time.Sleep(time.Millisecond)
				}
			}
			if got != flows*perFlow {
				t.Fatalf("read %d datagrams of %d", got, flows*perFlow)
			}
			if used[0] == 0 || used[1] == 0 {
				t.Errorf("all flows on one queue: %v datagrams per queue", used)
			}
			t.Logf("datagrams per queue: %v", used)
		})
	}
}

// udpPorts returns the UDP source and destination ports of the IP
// packet p.
func udpPorts(p []byte) (src, dst uint16, ok bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	at := 0
	switch p[0] >> 4 {
	case 4:
		if len(p) < 28 || p[9] != 17 {
			return 0, 0, false
		}
		at = int(p[0]&0xf) * 4
	case 6:
		if len(p) < 48 || p[6] != 17 {
			return 0, 0, false
		}
		at = 40
	default:
		return 0, 0, false
	}
	if len(p) < at+4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[at:]), binary.BigEndian.Uint16(p[at+2:]), true
}
