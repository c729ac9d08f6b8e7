package bpfpath

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/device"
)

var (
	overlayA = netip.MustParsePrefix("10.200.0.1/24")
	overlayB = netip.MustParsePrefix("10.200.0.2/24")
	macA     = [6]byte{0x02, 0, 0, 0, 1, 1}
	macB     = [6]byte{0x02, 0, 0, 0, 2, 2}
)

// side is one namespace's overlay TUN with the programs on it.
type side struct {
	ns  *topo.NS
	dev device.Device
	at  *Path
}

// bpfSide opens a TUN the way tunneld does (virtio header, TSO), gives it
// the overlay address and attaches the tunnel's programs.
func bpfSide(t *testing.T, ns *topo.NS, underlay string, tn Config, peers []Peer, addr netip.Prefix) *side {
	t.Helper()
	s := &side{ns: ns}
	mtu := 1500 - tn.Encap.Overhead()
	err := ns.Do(func() error {
		devs, err := device.Open(device.Config{Name: "tpbpf0", MTU: mtu, Offload: true}, 1)
		if err != nil {
			return err
		}
		s.dev = devs[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.dev.Close() })
	if err := ns.AddAddr("tpbpf0", addr); err != nil {
		t.Fatal(err)
	}
	if err := ns.LinkUp("tpbpf0"); err != nil {
		t.Fatal(err)
	}
	dl, err := ns.Handle().LinkByName("tpbpf0")
	if err != nil {
		t.Fatal(err)
	}
	ul, err := ns.Handle().LinkByName(underlay)
	if err != nil {
		t.Fatal(err)
	}
	tn.Device, tn.Underlay = dl.Attrs().Index, ul.Attrs().Index
	err = ns.Do(func() error {
		s.at, err = Attach(tn)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.at.Close() })
	if skipped, err := s.at.SetPeers(peers); err != nil || skipped != 0 {
		t.Fatalf("SetPeers: %d skipped, %v", skipped, err)
	}
	sides = append(sides, s)
	t.Cleanup(func() { sides = nil })
	return s
}

// tunnelPair gives each side its config and its peer: the other side's
// overlay address, as a /32 beside a prefix of the overlay nobody has.
func tunnelPair(p *topo.Pair, e Encap) (a, b Config, pa, pb []Peer) {
	a = Config{Encap: e, Local: p.AddrA.Addr(), VNI: 42, LocalMAC: macA, TOS: Inherit, DF: Inherit}
	b = Config{Encap: e, Local: p.AddrB.Addr(), VNI: 42, LocalMAC: macB, TOS: Inherit, DF: Inherit}
	pa = []Peer{{Prefix: netip.PrefixFrom(overlayB.Addr(), 32), Remote: p.AddrB.Addr(), MAC: macB}}
	pb = []Peer{{Prefix: netip.PrefixFrom(overlayA.Addr(), 32), Remote: p.AddrA.Addr(), MAC: macA}}
	return a, b, pa, pb
}

func offloadName(on bool) string {
	if on {
		return "offloads-on"
	}
	return "offloads-off"
}

// TestBPFPath runs ping and a TCP transfer through the programs on both
// sides for each encapsulation, checks the bytes by hash, decodes what
// crossed the underlay with gopacket, and checks from the programs'
// counters that they, not a user-space path, carried the traffic.
func TestBPFPath(t *testing.T) {
	for _, e := range []Encap{IPIP, GRE, VXLAN} {
		for _, on := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/%s", e, offloadName(on)), func(t *testing.T) {
				p := topo.NewPair(t, topo.PairOptions{Offloads: on})
				ta, tb, pa, pb := tunnelPair(p, e)
				bpfSide(t, p.A, p.IfA, ta, pa, overlayA)
				bpfSide(t, p.B, p.IfB, tb, pb, overlayB)
				checkForwarding(t, p, e)
			})
		}
	}
}

// TestBPFPathToKernelVXLAN puts the programs in A and the kernel's vxlan
// device in B, programmed as flannel does: the wire format is the
// kernel's, both ways.
func TestBPFPathToKernelVXLAN(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(offloadName(on), func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{Offloads: on})
			ta, _, pa, _ := tunnelPair(p, VXLAN)
			bpfSide(t, p.A, p.IfA, ta, pa, overlayA)
			if err := p.B.AddKernelVXLAN(topo.KernelVXLAN{Name: "vxlan42", VNI: 42, Port: 4789,
				Local: p.AddrB.Addr(), Remote: p.AddrA.Addr(), MAC: macB, Addr: overlayB, MTU: 1450}, overlayA.Addr(), macA); err != nil {
				t.Fatal(err)
			}
			checkForwarding(t, p, VXLAN)
		})
	}
}

var sides []*side

func counterDump(t *testing.T) string {
	var b strings.Builder
	for _, s := range sides {
		c, err := s.at.Counters()
		if err != nil {
			t.Error(err)
			continue
		}
		fmt.Fprintf(&b, "%s:", s.ns.Name)
		for r, v := range c {
			if v != 0 {
				fmt.Fprintf(&b, " %s=%d", Reason(r), v)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func checkForwarding(t *testing.T, p *topo.Pair, e Encap) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	capt, err := p.B.StartCapture(ctx, p.IfB, 20000)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.A.Ping(ctx, overlayB.Addr(), 3); err != nil {
		var dump strings.Builder
		for _, ns := range []*topo.NS{p.A, p.B} {
			o, _ := ns.Command(ctx, "ip", "-s", "link").CombinedOutput()
			dump.Write(o)
			o, _ = ns.Command(ctx, "ip", "neigh").CombinedOutput()
			dump.Write(o)
		}
		for _, f := range capt.StopFrames() {
			dump.WriteString(gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default).String())
		}
		t.Fatalf("ping: %v\n%s\n%s\n%s", err, out, counterDump(t), dump.String())
	}
	sent, got := transfer(t, ctx, p, 8<<20)
	if sent != got {
		t.Fatalf("TCP: sent sha256 %x, received %x", sent, got)
	}
	frames := capt.StopFrames()
	checkWire(t, frames, e, p)
	// Full-size datagrams that are no super-packet (one skb each, as long
	// as the device MTU) must be carried too.
	fullSize(t, p, e)
	// A destination no peer holds goes on to the TUN (where tunneld's
	// user-space path would count it) and is counted here as no peer.
	if err := p.A.SendUDP(netip.MustParseAddrPort("10.200.0.9:9"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, s := range sides {
		c, err := s.at.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if s.ns == p.A && (c[EncapSent] == 0 || c[EncapNoPeer] == 0) {
			t.Errorf("%s: the encap program sent %d, left %d to the device for want of a peer (want > 0 both): %s",
				s.ns.Name, c[EncapSent], c[EncapNoPeer], counterDump(t))
		}
		if c[EncapNoRoom] != 0 {
			t.Errorf("%s: %d packets dropped for want of room: %s", s.ns.Name, c[EncapNoRoom], counterDump(t))
		}
		// Every packet carried is counted for its peer, and A's 8 MB went
		// to B.
		pc, err := s.at.PeerCounters()
		if err != nil {
			t.Fatal(err)
		}
		var tx, rx, txBytes uint64
		for _, v := range pc {
			tx, rx, txBytes = tx+v.TxPackets, rx+v.RxPackets, txBytes+v.TxBytes
		}
		if tx != c[EncapSent] || rx != c[DecapReceived] {
			t.Errorf("%s: peers' counters tx %d rx %d, programs' sent %d received %d", s.ns.Name, tx, rx, c[EncapSent], c[DecapReceived])
		}
		if s.ns == p.A && txBytes < 8<<20 {
			t.Errorf("%s: %d bytes counted to the peer, less than the 8 MB sent", s.ns.Name, txBytes)
		}
		if c[DecapReceived] == 0 {
			t.Errorf("%s: the decap program received nothing: %s", s.ns.Name, counterDump(t))
		}
	}
}

// transfer sends n random bytes from A to B over TCP on the overlay and
// returns the hashes of what was sent and what arrived.
func transfer(t *testing.T, ctx context.Context, p *topo.Pair, n int) (sent, got [32]byte) {
	t.Helper()
	var ln net.Listener
	err := p.B.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(overlayB.Addr().String(), "5301"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- [32]byte{}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		_, _ = io.Copy(h, c)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		res <- s
	}()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	sent = sha256.Sum256(data)
	var c net.Conn
	err = p.A.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: overlayA.Addr().AsSlice()}}
		c, err = d.DialContext(ctx, "tcp4", net.JoinHostPort(overlayB.Addr().String(), "5301"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatalf("TCP send: %v", err)
	}
	c.Close()
	select {
	case got = <-res:
	case <-ctx.Done():
		t.Fatal("TCP: no result")
	}
	return sent, got
}

// checkWire decodes the underlay frames B saw with gopacket: every IPv4
// frame between the two underlay addresses must be the tunnel's format,
// with a valid outer IPv4 checksum and an inner IPv4 packet between the
// overlay addresses; with the offloads on at least one of A's frames
// must be a super-packet the veth carried whole.
func checkWire(t *testing.T, frames []topo.Frame, e Encap, p *topo.Pair) {
	t.Helper()
	var tunnel, super int
	ids := map[uint16]bool{}
	for _, f := range frames {
		pk := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || (ip.Protocol != layers.IPProtocolIPv4 && ip.Protocol != layers.IPProtocolGRE && ip.Protocol != layers.IPProtocolUDP) {
			continue
		}
		if ip.Protocol == layers.IPProtocolUDP && !strings.Contains(pk.String(), "VXLAN") {
			continue
		}
		tunnel++
		if want := protoOf(e); ip.Protocol != want {
			t.Fatalf("outer protocol %v, want %v:\n%s", ip.Protocol, want, pk)
		}
		hdr := f.Data[14:34]
		if sum := onesSum(hdr); sum != 0xffff {
			t.Fatalf("outer IPv4 checksum wrong (sum %#x):\n%s", sum, pk)
		}
		if int(ip.Length) > 1500 {
			super++
		}
		var inner *layers.IPv4
		ls := pk.Layers()
		for i := len(ls) - 1; i >= 0; i-- {
			if l, ok := ls[i].(*layers.IPv4); ok && l != ip {
				inner = l
				break
			}
		}
		if inner == nil {
			if ip.SrcIP.Equal(p.AddrA.Addr().AsSlice()) {
				t.Fatalf("no inner IPv4 in what the programs sent:\n%s", pk)
			}
			continue // the kernel's vxlan device also sends IPv6 (router solicitations, MLD)
		}
		src, dst := netip.AddrFrom4([4]byte(inner.SrcIP.To4())), netip.AddrFrom4([4]byte(inner.DstIP.To4()))
		if !overlayA.Contains(src) || !overlayA.Contains(dst) {
			t.Fatalf("inner %s -> %s outside the overlay:\n%s", src, dst, pk)
		}
		if ip.SrcIP.Equal(p.AddrA.Addr().AsSlice()) {
			// TOS and DF inherited; CE would leave as ECT(0)
			if want := inner.TOS; ip.TOS != want && !(want&3 == 3 && ip.TOS == want^1) {
				t.Fatalf("outer TOS %#x, inner %#x:\n%s", ip.TOS, want, pk)
			}
			if ip.Flags&layers.IPv4DontFragment != inner.Flags&layers.IPv4DontFragment {
				t.Fatalf("outer DF differs from inner:\n%s", pk)
			}
			ids[ip.Id] = true
			if ip.TTL != 64 {
				t.Fatalf("outer TTL %d, want 64:\n%s", ip.TTL, pk)
			}
		}
		if e == VXLAN {
			vx, _ := pk.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if vx == nil || vx.VNI != 42 || !vx.ValidIDFlag {
				t.Fatalf("VXLAN header wrong:\n%s", pk)
			}
		}
	}
	if tunnel == 0 {
		t.Fatalf("no tunnel frame among %d captured", len(frames))
	}
	if len(ids) < 10 {
		t.Errorf("%d distinct outer IP ids in what A sent; want one per packet", len(ids))
	}
	t.Logf("%d tunnel frames, %d of them super-packets carried whole (offloads %v)", tunnel, super, p.Offloads)
	if p.Offloads && super == 0 {
		t.Errorf("offloads on, but no super-packet crossed whole: the kernel segmented every one")
	}
}

func protoOf(e Encap) layers.IPProtocol {
	switch e {
	case IPIP:
		return layers.IPProtocolIPv4
	case GRE:
		return layers.IPProtocolGRE
	}
	return layers.IPProtocolUDP
}

func onesSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

// fullSize sends datagrams as long as the overlay MTU allows, and shorter,
// from A to B and checks that all arrive.
func fullSize(t *testing.T, p *topo.Pair, e Encap) {
	t.Helper()
	var ln net.PacketConn
	err := p.B.Do(func() (err error) {
		ln, err = net.ListenPacket("udp4", net.JoinHostPort(overlayB.Addr().String(), "5302"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mtu := 1500 - e.Overhead()
	sizes := []int{mtu - 28, mtu - 29, 1000, 100}
	err = p.A.Do(func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(overlayB.Addr().String(), "5302"))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, n := range sizes {
			if _, err := c.Write(make([]byte, n)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for _, n := range sizes {
		_ = ln.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, _, err := ln.ReadFrom(buf)
		if err != nil || got != n {
			t.Fatalf("datagram of %d bytes: got %d, %v (%s)", n, got, err, counterDump(t))
		}
	}
}
