package topo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustPing(t *testing.T, ctx context.Context, n *NS, addr string) {
	t.Helper()
	out, err := n.Ping(ctx, netip.MustParseAddr(addr), 3)
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", addr, n.Name, err, out)
	}
}

// checkOffloads asserts the veth offload state on both ends.
func checkOffloads(t *testing.T, ctx context.Context, p *Pair, wantOn bool) {
	t.Helper()
	for _, end := range []struct {
		ns *NS
		nm string
	}{{p.A, p.IfA}, {p.B, p.IfB}} {
		f, err := end.ns.Offloads(ctx, end.nm)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"} {
			v, ok := f[k]
			if !ok {
				t.Fatalf("%s %s: ethtool -k has no %q", end.ns.Name, end.nm, k)
			}
			// veth has GRO off by default; only check the "off" direction for it.
			if k == "generic-receive-offload" && wantOn {
				continue
			}
			if v != wantOn {
				t.Errorf("%s %s: %s = %v, want %v", end.ns.Name, end.nm, k, v, wantOn)
			}
		}
		if !wantOn && f["rx-checksumming"] {
			t.Errorf("%s %s: rx-checksumming still on", end.ns.Name, end.nm)
		}
	}
}

func checkMTU(t *testing.T, p *Pair, want int) {
	t.Helper()
	for _, end := range []struct {
		ns *NS
		nm string
	}{{p.A, p.IfA}, {p.B, p.IfB}} {
		l, err := end.ns.Handle().LinkByName(end.nm)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Attrs().MTU; got != want {
			t.Errorf("%s %s: MTU %d, want %d", end.ns.Name, end.nm, got, want)
		}
	}
}

func TestPairIPv4OffloadsOff(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	p := NewPair(t, PairOptions{})
	if p.AddrA6.IsValid() || p.AddrB6.IsValid() {
		t.Errorf("IPv6 addresses set without IPv6: %v %v", p.AddrA6, p.AddrB6)
	}
	mustPing(t, ctx, p.A, "10.99.0.2")
	mustPing(t, ctx, p.B, "10.99.0.1")
	checkOffloads(t, ctx, p, false)
	checkMTU(t, p, 1500)
}

func TestPairIPv6(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	p := NewPair(t, PairOptions{IPv6: true, Offloads: true, MTU: 9000})
	mustPing(t, ctx, p.A, "10.99.0.2")
	mustPing(t, ctx, p.A, "fd99::2")
	mustPing(t, ctx, p.B, "fd99::1")
	checkOffloads(t, ctx, p, true)
	checkMTU(t, p, 9000)
	// A full-size DF ping proves the MTU is really usable end to end.
	if out, err := p.A.PingWith(ctx, netip.MustParseAddr("10.99.0.2"), PingOptions{Count: 2, Size: 9000 - 28, DontFragment: true}); err != nil {
		t.Fatalf("jumbo DF ping: %v\n%s", err, out)
	}
}

func nsGone(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(netnsDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still in %s (stat err %v)", name, netnsDir, err)
	}
	if h, err := netns.GetFromName(name); err == nil {
		h.Close()
		t.Errorf("netns.GetFromName(%s) still succeeds", name)
	}
}

func TestCloseRemovesNamespaces(t *testing.T) {
	RequireRoot(t)
	p, err := Build(PairOptions{IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{p.A.Name, p.B.Name}
	for _, nm := range names {
		if !strings.HasPrefix(nm, "tp-") {
			t.Errorf("namespace name %q lacks the tp- prefix", nm)
		}
		if _, err := os.Stat(filepath.Join(netnsDir, nm)); err != nil {
			t.Fatalf("namespace %s missing while open: %v", nm, err)
		}
	}
	// The namespace must be visible to other processes by name.
	if out, err := exec.Command("ip", "netns", "exec", p.A.Name, "ip", "-o", "link", "show", p.IfA).CombinedOutput(); err != nil {
		t.Fatalf("ip netns exec: %v\n%s", err, out)
	}
	// A process started through Command must not keep running after Close.
	cmd := p.B.Command(context.Background(), "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, nm := range names {
		nsGone(t, nm)
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Error("process started through Command still running after Close")
	}
	if err := p.A.Do(func() error { return nil }); err == nil {
		t.Error("Do on a closed NS succeeded")
	}
}

func TestDo(t *testing.T) {
	p := NewPair(t, PairOptions{})
	var inside, outside bool
	var ln net.Listener
	err := p.B.Do(func() error {
		_, err := net.InterfaceByName(p.IfB)
		inside = err == nil
		ln, err = net.Listen("tcp", "10.99.0.2:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !inside {
		t.Errorf("%s not visible inside Do", p.IfB)
	}
	// The caller's namespace is untouched.
	if _, err := net.InterfaceByName(p.IfB); err == nil {
		outside = true
	}
	if outside {
		t.Errorf("%s visible outside Do: namespace switch leaked", p.IfB)
	}
	// The listener created inside stays in B: dial it from A.
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	err = p.A.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		if err == nil && string(buf) != "hi" {
			err = errors.New("bad greeting " + string(buf))
		}
		return err
	})
	if err != nil {
		t.Fatalf("dial from A into B's listener: %v", err)
	}
	// Errors and panics come back to the caller.
	sentinel := errors.New("sentinel")
	if err := p.A.Do(func() error { return sentinel }); err != sentinel {
		t.Errorf("Do error = %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		p.A.Do(func() error { panic("boom") })
	}()
}

func TestPingRefusesForeignAddresses(t *testing.T) {
	// Safety rule: never send traffic outside the project ranges. Refused
	// before anything runs, so no namespace is needed.
	n := &NS{Name: "none", fd: -1}
	for _, a := range []string{"192.0.2.1", "8.8.8.8", "2001:db8::1", "10.98.0.1", "fd99:0:0:1::1"} {
		if _, err := n.Ping(context.Background(), netip.MustParseAddr(a), 1); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("Ping(%s) = %v, want refusal", a, err)
		}
	}
	for _, a := range []string{"10.99.0.2", "fd99::2", "10.200.3.4", "fd00:200::9", "127.0.0.1", "::ffff:10.99.0.1"} {
		if !Allowed(netip.MustParseAddr(a)) {
			t.Errorf("Allowed(%s) = false", a)
		}
	}
}

// icmpEcho reports whether an Ethernet frame carries an IPv4 ICMP echo
// request from src to dst.
func icmpEcho(f []byte, src, dst netip.Addr) bool {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl+8 || ip[9] != 1 {
		return false
	}
	s, _ := netip.AddrFromSlice(ip[12:16])
	d, _ := netip.AddrFromSlice(ip[16:20])
	return s == src && d == dst && ip[ihl] == 8
}

func TestCapture(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	p := NewPair(t, PairOptions{})
	c, err := p.B.StartCapture(ctx, p.IfB, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustPing(t, ctx, p.A, "10.99.0.2")
	frames := c.StopFrames()
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	a, b := p.AddrA.Addr(), p.AddrB.Addr()
	var req, reply bool
	for _, f := range frames {
		if !f.Outgoing && icmpEcho(f.Data, a, b) {
			req = true
		}
		// Echo reply (type 0) leaves B.
		if f.Outgoing && len(f.Data) > 34 && binary.BigEndian.Uint16(f.Data[12:14]) == 0x0800 && f.Data[23] == 1 && f.Data[34] == 0 {
			reply = true
		}
	}
	if !req || !reply {
		t.Fatalf("captured %d frames: echo request seen %v, reply seen %v", len(frames), req, reply)
	}
	if got := c.Stop(); len(got) != len(frames) {
		t.Errorf("second Stop returned %d frames, want %d", len(got), len(frames))
	}
	// With max=1 the capture ends by itself after one frame.
	c1, err := p.B.StartCapture(ctx, p.IfB, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustPing(t, ctx, p.A, "10.99.0.2")
	if got := c1.Stop(); len(got) != 1 {
		t.Errorf("max=1 capture returned %d frames", len(got))
	}
}

func TestKernelVXLAN(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ipv6     bool
		overlay6 bool
	}{
		{"underlay4", false, false},
		{"underlay6", true, false},
		{"underlay4-overlay6", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			p := NewPair(t, PairOptions{IPv6: tc.ipv6})
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			if tc.ipv6 {
				la, lb = p.AddrA6.Addr(), p.AddrB6.Addr()
			}
			oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
			if tc.overlay6 {
				oa, ob = netip.MustParsePrefix("fd00:200::1/64"), netip.MustParsePrefix("fd00:200::2/64")
			}
			macA := [6]byte{0x02, 0, 0, 0, 0x01, 0x01}
			macB := [6]byte{0x02, 0, 0, 0, 0x02, 0x02}
			va := KernelVXLAN{Name: "vxlan42", VNI: 42, Port: 4789, Local: la, Remote: lb, MAC: macA, Addr: oa, Dev: p.IfA}
			vb := KernelVXLAN{Name: "vxlan42", VNI: 42, Port: 4789, Local: lb, Remote: la, MAC: macB, Addr: ob}
			if err := p.A.AddKernelVXLAN(va, ob.Addr(), macB); err != nil {
				t.Fatal(err)
			}
			if err := p.B.AddKernelVXLAN(vb, oa.Addr(), macA); err != nil {
				t.Fatal(err)
			}
			l, err := p.A.Handle().LinkByName("vxlan42")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(l.Attrs().HardwareAddr, macA[:]) {
				t.Errorf("vxlan MAC %v, want %x", l.Attrs().HardwareAddr, macA)
			}
			c, err := p.B.StartCapture(ctx, p.IfB, 0)
			if err != nil {
				t.Fatal(err)
			}
			mustPing(t, ctx, p.A, ob.Addr().String())
			frames := c.Stop()
			// The underlay must carry UDP/4789 with VNI 42 and the fixed
			// inner MACs: decode just enough by hand.
			found := false
			for _, f := range frames {
				if vni, inner, ok := vxlanPayload(f, 4789); ok && vni == 42 && len(inner) >= 12 &&
					bytes.Equal(inner[0:6], macB[:]) && bytes.Equal(inner[6:12], macA[:]) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("no VXLAN VNI 42 frame A->B among %d captured frames", len(frames))
			}
			// No ARP/NDP needed: the neighbour entry is permanent.
			out, err := p.A.Command(ctx, "ip", "neigh", "show", "dev", "vxlan42").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "PERMANENT") {
				t.Errorf("neighbour entry: %v\n%s", err, out)
			}
			out, err = p.A.Command(ctx, "bridge", "fdb", "show", "dev", "vxlan42").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "00:00:00:00:00:00 dst "+lb.String()) {
				t.Errorf("fdb entry: %v\n%s", err, out)
			}
		})
	}
}

// vxlanPayload decodes Ethernet / IPv4|IPv6 / UDP(dport) / VXLAN and returns
// the VNI and the inner Ethernet frame.
func vxlanPayload(f []byte, dport uint16) (uint32, []byte, bool) {
	if len(f) < 14 {
		return 0, nil, false
	}
	var udp []byte
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[9] != 17 {
			return 0, nil, false
		}
		udp = ip[int(ip[0]&0x0f)*4:]
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[6] != 17 {
			return 0, nil, false
		}
		udp = ip[40:]
	default:
		return 0, nil, false
	}
	if len(udp) < 16 || binary.BigEndian.Uint16(udp[2:4]) != dport || udp[8] != 0x08 {
		return 0, nil, false
	}
	vni := binary.BigEndian.Uint32(udp[12:16]) >> 8
	return vni, udp[16:], true
}

func TestExtraRoutes(t *testing.T) {
	// Overlay addresses in different subnets: host route plus a routed prefix.
	ctx := testCtx(t, 30*time.Second)
	p := NewPair(t, PairOptions{})
	macA := [6]byte{0x02, 0, 0, 0, 0x01, 0x01}
	macB := [6]byte{0x02, 0, 0, 0, 0x02, 0x02}
	oa, ob := netip.MustParsePrefix("10.200.1.0/32"), netip.MustParsePrefix("10.200.2.0/32")
	va := KernelVXLAN{Name: "flannel.1", VNI: 1, Port: 8472, Local: p.AddrA.Addr(), Remote: p.AddrB.Addr(), MAC: macA, Addr: oa,
		PeerRoutes: []netip.Prefix{netip.MustParsePrefix("10.200.2.0/24")}}
	vb := KernelVXLAN{Name: "flannel.1", VNI: 1, Port: 8472, Local: p.AddrB.Addr(), Remote: p.AddrA.Addr(), MAC: macB, Addr: ob,
		PeerRoutes: []netip.Prefix{netip.MustParsePrefix("10.200.1.0/24")}}
	if err := p.A.AddKernelVXLAN(va, ob.Addr(), macB); err != nil {
		t.Fatal(err)
	}
	if err := p.B.AddKernelVXLAN(vb, oa.Addr(), macA); err != nil {
		t.Fatal(err)
	}
	mustPing(t, ctx, p.A, "10.200.2.0")
}

// TestParallelAndBounded builds several pairs concurrently inside a bounded
// time, checking names never collide and that every namespace is gone once
// the subtests' cleanups have run — including the one whose subtest is
// meant to fail (see TestTeardownAfterFailure for a real failure).
func TestParallelAndBounded(t *testing.T) {
	RequireRoot(t)
	ctx := testCtx(t, 60*time.Second)
	var mu sync.Mutex
	var names []string
	t.Run("group", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			t.Run("pair", func(t *testing.T) {
				t.Parallel()
				p := NewPair(t, PairOptions{IPv6: i%2 == 0})
				mu.Lock()
				names = append(names, p.A.Name, p.B.Name)
				mu.Unlock()
				mustPing(t, ctx, p.A, "10.99.0.2")
			})
		}
	})
	seen := map[string]bool{}
	for _, nm := range names {
		if seen[nm] {
			t.Errorf("namespace name %s used twice", nm)
		}
		seen[nm] = true
		nsGone(t, nm)
	}
	if len(names) != 8 {
		t.Errorf("got %d namespace names, want 8", len(names))
	}
	if ctx.Err() != nil {
		t.Errorf("exceeded the time bound: %v", ctx.Err())
	}
}

const helperEnv = "TOPO_TEST_HELPER_OUT"

// TestHelperFailingSubtest is run as a child process by
// TestTeardownAfterFailure; on its own it does nothing.
func TestHelperFailingSubtest(t *testing.T) {
	out := os.Getenv(helperEnv)
	if out == "" {
		t.Skip("helper for TestTeardownAfterFailure")
	}
	t.Run("fails", func(t *testing.T) {
		p := NewPair(t, PairOptions{})
		n := NewNS(t, "x")
		os.WriteFile(out, []byte(p.A.Name+"\n"+p.B.Name+"\n"+n.Name+"\n"), 0o644)
		t.Fatal("deliberate failure")
	})
}

func TestTeardownAfterFailure(t *testing.T) {
	RequireRoot(t)
	ctx := testCtx(t, 60*time.Second)
	out := filepath.Join(t.TempDir(), "names")
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperFailingSubtest$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+out)
	log, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(log), "deliberate failure") {
		t.Fatalf("helper should fail deliberately; err=%v\n%s", err, log)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("helper wrote no names: %v\n%s", err, log)
	}
	names := strings.Fields(string(data))
	if len(names) != 3 {
		t.Fatalf("names: %q", names)
	}
	for _, nm := range names {
		nsGone(t, nm)
	}
}
