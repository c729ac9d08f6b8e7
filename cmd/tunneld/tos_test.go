package main

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// TestOuterHeaderFields: the outer TOS follows the inner packet with
// tos: inherit (the default), or the configured value; the outer TTL
// follows ttl. Checked on frames captured on the underlay and decoded by
// gopacket, for single echo requests and for a bulk TCP transfer: with the
// veth offloads on, the transfer crosses the underlay as UDP GSO
// super-packets (VXLAN), each with one outer header for all its segments.
func TestOuterHeaderFields(t *testing.T) { bothOffloads(t, outerHeaderCases) }

func outerHeaderCases(t *testing.T, offloads bool) {
	for _, tc := range []struct {
		name, encap      string
		wantTOS, wantTTL uint8
		super            bool // with the veth offloads on, the transfer arrives in super-packets
	}{
		{"gre/inherit", "  type: gre\n", 0xb8, 64, false},
		{"vxlan/inherit", "  type: vxlan\n", 0xb8, 64, true},
		{"vxlan/tos-32", "  type: vxlan\n  tos: 32\n", 32, 64, true},
		{"ipip/ttl-20", "  type: ipip\n  ttl: 20\n", 0xb8, 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
			topo.NoChecksumErrors(t, p.A, p.B)
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
			startTunneld(t, p.A, "tp0", tunneldConfig("tun", tc.encap, "", la, lb, oa, ob, "", ""))
			startTunneld(t, p.B, "tp0", tunneldConfig("tun", tc.encap, "", lb, la, ob, oa, "", ""))
			ping(t, p.A, ob.Addr())
			check := func(what string, send func()) (frames, super int) {
				t.Helper()
				capt, err := p.B.StartCapture(context.Background(), p.IfB, 0)
				if err != nil {
					t.Fatal(err)
				}
				send()
				time.Sleep(50 * time.Millisecond)
				for _, f := range capt.StopFrames() {
					ip, ok := tunneledTOS(f, la, 0xb8)
					if !ok {
						continue
					}
					frames++
					if f.Len > 14+p.MTU {
						super++
					}
					if ip.TOS != tc.wantTOS || ip.TTL != tc.wantTTL {
						t.Fatalf("%s: outer TOS %#x TTL %d (frame of %d bytes), want TOS %#x TTL %d", what, ip.TOS, ip.TTL, f.Len, tc.wantTOS, tc.wantTTL)
					}
				}
				if frames == 0 {
					t.Fatalf("%s: no encapsulated packet with inner TOS 0xb8 captured", what)
				}
				return frames, super
			}
			check("ping -Q 0xb8", func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if out, err := p.A.Command(ctx, "ping", "-n", "-c", "3", "-i", "0.2", "-Q", "0xb8", ob.Addr().String()).CombinedOutput(); err != nil {
					t.Fatalf("ping -Q 0xb8: %v\n%s", err, out)
				}
			})
			n, super := check("TCP with IP_TOS 0xb8", func() { tcpSendWithTOS(t, p.A, p.B, ob.Addr(), 0xb8, 1<<20) })
			t.Logf("TCP: %d encapsulated frames, %d of them super-packets", n, super)
			if offloads && tc.super && super == 0 {
				t.Errorf("veth offloads on, but no GSO super-packet crossed the underlay: the outer header of one was not checked")
			}
		})
	}
}

// tunneledTOS decodes a frame received on the underlay from src and
// returns its outer IPv4 header if the tunneled packet inside is IPv4 with
// TOS tos. gopacket finds the inner header as the last IPv4 layer; in a
// super-packet that is the first segment's.
func tunneledTOS(f topo.Frame, src netip.Addr, tos uint8) (*layers.IPv4, bool) {
	if f.Outgoing {
		return nil, false
	}
	pkt := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok || ip.SrcIP.String() != src.String() {
		return nil, false
	}
	var inner *layers.IPv4
	for _, l := range pkt.Layers() {
		if v, ok := l.(*layers.IPv4); ok && v != ip {
			inner = v
		}
	}
	return ip, inner != nil && inner.TOS == tos
}

// tcpSendWithTOS sends size bytes over TCP from ns `from` to dst:5204 in
// `to` with IP_TOS tos on the sending socket, and waits until the receiver
// has read them all.
func tcpSendWithTOS(t *testing.T, from, to *topo.NS, dst netip.Addr, tos uint8, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ap := netip.AddrPortFrom(dst, 5204)
	l, _ := listenIn(t, to, "tcp", ap.String())
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	err := from.Do(func() error {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, int(tos)) }); err != nil {
				return err
			}
			return serr
		}}
		var err error
		c, err = d.DialContext(ctx, "tcp", ap.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %s: %v", ap, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-got:
		if n != int64(size) {
			t.Fatalf("TCP: %d of %d bytes arrived", n, size)
		}
	case <-ctx.Done():
		t.Fatalf("TCP transfer of %d bytes timed out", size)
	}
}
