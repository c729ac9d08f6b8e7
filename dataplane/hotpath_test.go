package dataplane

import (
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/dataplane/underlay/underlaytest"
	"tunnelplane/encap"
)

// The in-process hot path with fake devices and sockets: the real
// pipeline routines (read, classify, encap or validate/decap, hand-over,
// batched write) with the system calls replaced by copies from and to
// memory. It measures what the data plane costs per packet on its own,
// apart from the kernel, and proves it allocates nothing per packet.

const benchConfig = `
device:
  name: tpbench
  addresses: [10.200.0.1/24]
  mac: 02:00:00:00:01:01
encap:
  type: vxlan
  vni: 42
underlay:
  local: 10.99.0.1
peers:
  - remote: 10.99.0.2
    prefixes: [10.200.0.2/32]
    mac: 02:00:00:00:02:02
`

// newTestDataplane builds a data plane around fakes (New with one device
// queue and its socket, no Network), without devices, sockets or netlink.
func newTestDataplane(tb testing.TB, pipeline string, dev device.Device, conn *underlaytest.Fake) (*Dataplane, *queueSet) {
	tb.Helper()
	return newTestDataplaneWith(tb, benchConfig, pipeline, dev, conn)
}

// newTestDataplaneWith is newTestDataplane for another config.
func newTestDataplaneWith(tb testing.TB, yaml, pipeline string, dev device.Device, conn *underlaytest.Fake) (*Dataplane, *queueSet) {
	tb.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Pipeline = pipeline
	d, err := New(cfg, Parts{
		Devices:  []device.Device{dev},
		Underlay: underlay.Sockets{Queues: []underlay.Queue{{Recv: conn, Send: conn}}, GSO: true},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if testPoolSmall != smallBuffers || testPoolLarge != largeBuffers {
		d.bufs = newBuffersN(cfg.Underlay.MTU+64, testPoolSmall, testPoolLarge)
	}
	return d, d.queues[0]
}

// Pool sizes for newTestDataplane; a test may shrink them.
var testPoolSmall, testPoolLarge = smallBuffers, largeBuffers

// innerPacket is an IPv4/UDP packet with a 64-byte payload from src to dst.
func innerPacket(src, dst string) []byte {
	b := make([]byte, encap.IPv4Len+encap.UDPLen+64)
	encap.PushUDP(b, encap.IPv4Len+encap.UDPLen, len(b), 40000, 5201)
	encap.PushIPv4(b, encap.IPv4Len, len(b), &encap.IPv4Header{
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: encap.ProtoUDP, TTL: 64, DF: true})
	return b
}

// vxlanDatagram is what the peer sends for inner: VXLAN + Ethernet + inner.
func vxlanDatagram(inner []byte) []byte {
	b := make([]byte, encap.VXLANLen+encap.EthernetLen+len(inner))
	copy(b[encap.VXLANLen+encap.EthernetLen:], inner)
	off := encap.PushEthernet(b, encap.VXLANLen+encap.EthernetLen, [6]byte{2, 0, 0, 0, 1, 1}, [6]byte{2, 0, 0, 0, 2, 2}, encap.EtherTypeIPv4)
	encap.PushVXLAN(b, off, 42)
	return b
}

// runEgress pushes n packets from the fake device through the egress
// pipeline and waits until the fake socket has them all.
func runEgress(tb testing.TB, pipeline string, n int) (*Dataplane, *underlaytest.Fake) {
	dev := &devicetest.Fake{Pkt: innerPacket("10.200.0.1", "10.200.0.2"), Left: n, Burst: 64}
	conn := &underlaytest.Fake{}
	d, q := newTestDataplane(tb, pipeline, dev, conn)
	resetTimer(tb)
	if !d.direct {
		d.wg.Add(1)
		go d.routineWriter("underlay-writer", q.underlayHandoff, d.newUnderlayWriter(q, &q.uwriter, 128))
	}
	d.wg.Add(1)
	d.routineDeviceReader(q)
	for conn.Sent.Load() < int64(n) {
		runtime.Gosched()
	}
	close(d.done)
	d.wg.Wait()
	return d, conn
}

func runIngress(tb testing.TB, pipeline string, n int) (*Dataplane, *devicetest.Fake) {
	dev := &devicetest.Fake{}
	conn := &underlaytest.Fake{Dgram: vxlanDatagram(innerPacket("10.200.0.2", "10.200.0.1")),
		From: netip.MustParseAddrPort("10.99.0.2:4789"), Left: n}
	d, q := newTestDataplane(tb, pipeline, dev, conn)
	resetTimer(tb)
	if !d.direct {
		d.wg.Add(1)
		go d.routineWriter("device-writer", q.deviceHandoff, d.newDeviceWriter(q.dev, &q.dwriter, 128))
	}
	d.wg.Add(1)
	d.routineUnderlayReader(q)
	for dev.Written.Load() < int64(n) {
		runtime.Gosched()
	}
	close(d.done)
	d.wg.Wait()
	return d, dev
}

func TestHotPathForwardsEverything(t *testing.T) {
	for _, pipeline := range []string{"direct", "rings"} {
		t.Run(pipeline, func(t *testing.T) {
			d, conn := runEgress(t, pipeline, 10000)
			if s := d.Stats(); conn.Sent.Load() != 10000 || s.EgressTxPackets != 10000 || len(s.Drops) != 0 {
				t.Fatalf("egress: sent %d, stats %+v", conn.Sent.Load(), s)
			}
			d, dev := runIngress(t, pipeline, 10000)
			if s := d.Stats(); dev.Written.Load() != 10000 || s.IngressTxPackets != 10000 || len(s.Drops) != 0 {
				t.Fatalf("ingress: written %d, stats %+v", dev.Written.Load(), s)
			}
			if d.bufs.small.Free() != d.bufs.small.Cap() || d.bufs.large.Free() != d.bufs.large.Cap() {
				t.Fatalf("buffers leaked: small %d/%d large %d/%d", d.bufs.small.Free(), d.bufs.small.Cap(), d.bufs.large.Free(), d.bufs.large.Cap())
			}
		})
	}
}

// TestHotPathAllocations: the allocations of a run do not grow with the
// number of packets (only the per-run set-up allocates).
func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	allocs := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.Mallocs - a.Mallocs
	}
	for _, pipeline := range []string{"direct", "rings"} {
		for _, dir := range []string{"egress", "ingress"} {
			run := func(n int) func() {
				return func() {
					if dir == "egress" {
						runEgress(t, pipeline, n)
					} else {
						runIngress(t, pipeline, n)
					}
				}
			}
			small, large := allocs(run(1000)), allocs(run(201000))
			// 200,000 more packets may cost a handful of allocations more
			// (the runtime's own, e.g. a goroutine stack growing), never one
			// per batch or per packet.
			if large > small+20 {
				t.Errorf("%s/%s: %d allocations for 1000 packets, %d for 201000", pipeline, dir, small, large)
			}
		}
	}
}

func benchmarkPath(b *testing.B, pipeline string, egress bool) {
	b.ReportAllocs()
	if egress {
		runEgress(b, pipeline, b.N)
	} else {
		runIngress(b, pipeline, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// resetTimer leaves the setup (the pool's slabs) out of a benchmark's time
// and bytes per op.
func resetTimer(tb testing.TB) {
	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
	}
}

func BenchmarkEgressDirect(b *testing.B)  { benchmarkPath(b, "direct", true) }
func BenchmarkEgressRings(b *testing.B)   { benchmarkPath(b, "rings", true) }
func BenchmarkIngressDirect(b *testing.B) { benchmarkPath(b, "direct", false) }
func BenchmarkIngressRings(b *testing.B)  { benchmarkPath(b, "rings", false) }

// TestTinyPool: with a pool far smaller than a batch, the pipeline neither
// deadlocks nor loses track of buffers; where it cannot get one (splitting
// a UDP GRO read), it drops and counts the packet.
func TestTinyPool(t *testing.T) {
	testPoolSmall, testPoolLarge = 8, 4
	defer func() { testPoolSmall, testPoolLarge = smallBuffers, largeBuffers }()
	for _, pipeline := range []string{"direct", "rings"} {
		t.Run(pipeline, func(t *testing.T) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				d, conn := runEgress(t, pipeline, 5000)
				if conn.Sent.Load() != 5000 {
					t.Errorf("egress sent %d of 5000", conn.Sent.Load())
				}
				checkPools(t, d)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("egress with a tiny pool did not finish: deadlock")
			}
		})
	}
	// Ingress: each read is a GRO train of 16 datagrams. Direct borrows
	// them in place and needs no other buffer; rings copies each but the
	// first into a buffer of its own, needs 15, and there are 8.
	for _, pipeline := range []string{"direct", "rings"} {
		t.Run("ingress-"+pipeline, func(t *testing.T) {
			dev := &devicetest.Fake{}
			conn := &underlaytest.Fake{Dgram: vxlanDatagram(innerPacket("10.200.0.2", "10.200.0.1")), Segs: 16,
				From: netip.MustParseAddrPort("10.99.0.2:4789"), Left: 200}
			d, q := newTestDataplane(t, pipeline, dev, conn)
			if !d.direct {
				d.wg.Add(1)
				go d.routineWriter("device-writer", q.deviceHandoff, d.newDeviceWriter(q.dev, &q.dwriter, 128))
			}
			d.wg.Add(1)
			finished := make(chan struct{})
			go func() { d.routineUnderlayReader(q); close(finished) }()
			select {
			case <-finished:
			case <-time.After(20 * time.Second):
				t.Fatal("ingress with a tiny pool did not finish: deadlock")
			}
			deadline := time.Now().Add(10 * time.Second)
			for s := d.Stats(); uint64(dev.Written.Load())+s.Drops["pool_exhausted"] < 200*16 && time.Now().Before(deadline); s = d.Stats() {
				time.Sleep(time.Millisecond)
			}
			close(d.done)
			d.wg.Wait()
			s := d.Stats()
			exhausted := s.Drops["pool_exhausted"]
			if uint64(dev.Written.Load())+exhausted != 200*16 || s.IngressRxPackets != 200*16 || (exhausted == 0) != d.direct {
				t.Fatalf("written %d + pool_exhausted %d != %d (rx %d)", dev.Written.Load(), exhausted, 200*16, s.IngressRxPackets)
			}
			checkPools(t, d)
		})
	}
}

func checkPools(t *testing.T, d *Dataplane) {
	t.Helper()
	if d.bufs.small.Free() != d.bufs.small.Cap() || d.bufs.large.Free() != d.bufs.large.Cap() {
		t.Errorf("buffers leaked: small %d/%d large %d/%d", d.bufs.small.Free(), d.bufs.small.Cap(), d.bufs.large.Free(), d.bufs.large.Cap())
	}
}
