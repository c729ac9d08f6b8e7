//go:build linux

package packetsock

// The receive side of the probe (part d): cost per packet, drain and
// latency of each B reader.

import (
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func recvRow(ss []sample) string {
	s0 := ss[0]
	return fmt.Sprintf("| %s | **%s** | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |", s0.name,
		stat(ss, func(s sample) float64 { return perPkt(s.rUser+s.rSys, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.rUser, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.wUser+s.wSys, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.machine, s.n) }),
		stat(ss, func(s sample) float64 { return float64(s.pkts) / float64(max(s.calls, 1)) }),
		stat(ss, func(s sample) float64 { return float64(s.pkts) / float64(max(s.rNvcsw, 1)) }),
		stat(ss, func(s sample) float64 { return perPkt(s.wall, s.n) }),
		statf(ss, func(s sample) float64 { return 100 * float64(s.pkts) / float64(s.n) }, "%.1f%%"),
		statf(ss, func(s sample) float64 { return 100 * float64(s.ipIn) / float64(s.n) }, "%.0f%%"),
		sum(ss, func(s sample) int64 { return s.vethDrops }),
		sum(ss, func(s sample) int64 { return s.sockDrops + s.ringDrops }))
}

// TestRecvCost is part (d): B's receive side. A sends with today's raw
// sendmmsg-64; B reads either with a raw socket for protocol 4 and
// recvmmsg(64, MSG_WAITFORONE), or with a TPACKET_V3 RX ring on vxb (poll
// only when the current block is not ready; 1 ms block timeout) plus a
// second raw socket for protocol 4 with a drop-all filter, so that B sends
// no protocol-unreachable. Each run opens its receiver and closes it after,
// so no other reader of the same packets exists during a run. Reported:
// reader CPU per packet, packets per wake-up (per recvmmsg or poll that
// returned data, and per voluntary context switch of the reader thread).
func TestRecvCost(t *testing.T) {
	e := newEnv(t)
	n, reps := params()
	s := newRawSender(e.openRaw(e.nsA, outerSrc), innerSet(0))
	type rcv struct {
		name string
		open func() (receiver, func())
	}
	ring := func(bs, nb int) func() (receiver, func()) {
		return func() (receiver, func()) {
			comp := e.openRaw(e.nsB, outerDst)
			r := e.openRxRing(bs, nb, 1, false)
			return r, func() { r.close(); e.closeNow(comp) }
		}
	}
	kinds := []rcv{
		{"raw recvmmsg-64", func() (receiver, func()) {
			r := e.openRawReceiver()
			return r, func() { e.closeNow(r.fd) }
		}},
		{"V3 ring 64KiBx256", ring(1<<16, 256)},
		{"V3 ring 256KiBx64", ring(1<<18, 64)},
		{"V2 ring 8192 frames", func() (receiver, func()) {
			comp := e.openRaw(e.nsB, outerDst)
			r := e.openRxRingV2(8192)
			return r, func() { r.close(); e.closeNow(comp) }
		}},
		{"V3 ring 256KiBx64, ETH_P_ALL + tc drop", func() (receiver, func()) {
			undo, err := e.tcDropIPIP(e.nsB, "vxb")
			if err != nil {
				t.Fatalf("tc drop: %v", err)
			}
			r := e.openRxRing(1<<18, 64, 1, true)
			return r, func() { r.close(); undo() }
		}},
	}
	t.Logf("%s: kernel %s, N=%d, %d repetition(s); sender: raw sendmmsg-64; ns per packet, median [min-max]; tunbench.done present: %v; loadavg %s",
		time.Now().UTC().Format(time.TimeOnly), uname(), n, reps, fileExists("/tmp/tunbench.done"), loadavg())
	defer func() { t.Logf("%s: done; loadavg %s", time.Now().UTC().Format(time.TimeOnly), loadavg()) }()
	for _, off := range offloadSettings {
		e.applyOffloads(off.on)
		res := make([][]sample, len(kinds))
		for rep := range reps {
			for k := range kinds {
				i := (k + rep) % len(kinds)
				r, closeFn := kinds[i].open()
				c := e.measure(s, r, n)
				closeFn()
				c.name = kinds[i].name
				res[i] = append(res[i], c)
			}
		}
		t.Logf("offloads %s (%s):", off.name, e.features())
		t.Logf("| B reader | **reader cpu** | reader usr | A writer cpu | machine busy | pkts per wake (syscall) | pkts per sleep (nvcsw) | wall | delivered | reached B's IP stack | vxa tx drops | B socket/ring drops |")
		t.Logf("|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range res {
			t.Log(recvRow(r))
			checkSamples(t, r)
		}
	}
}

// nullReceiver reads nothing: with tcDropIPIP on vxb, B's IP stack never
// sees the packets either, so the writer's CPU is the send path and the
// veth alone.
type nullReceiver struct{}

func (nullReceiver) name() string { return "none (tc drop at vxb ingress)" }
func (nullReceiver) loop(stop *atomic.Bool, _ *rxCount) {
	for !stop.Load() {
		time.Sleep(time.Millisecond)
	}
}

// TestSendOnlyCost is TestSendCost with nobody receiving: a tc program on
// vxb's ingress drops protocol 4 before B's IP stack, so the writer's CPU
// holds only its own send path and the veth (no B softirq work runs in its
// context). Delivered = frames counted on vxb. qdisc noqueue.
func TestSendOnlyCost(t *testing.T) {
	e := newEnv(t)
	n, reps := params()
	undo, err := e.tcDropIPIP(e.nsB, "vxb")
	if err != nil {
		t.Fatalf("tc drop: %v", err)
	}
	defer undo()
	ss := onlyPaths(e.senders(innerSet(0)))
	t.Logf("%s: N=%d, %d repetition(s); ns per packet, median [min-max]; loadavg %s", time.Now().UTC().Format(time.TimeOnly), n, reps, loadavg())
	for _, off := range offloadSettings {
		e.applyOffloads(off.on)
		res := make([][]sample, len(ss))
		for rep := range reps {
			for k := range ss {
				i := (k + rep) % len(ss)
				c := e.measure(ss[i], nullReceiver{}, n)
				c.pkts = c.vxbRx
				res[i] = append(res[i], c)
			}
		}
		t.Logf("offloads %s, qdisc noqueue, B drops at tc ingress:", off.name)
		t.Logf("| send path | writer usr | writer sys | **writer cpu** | machine busy | wall | arrived at vxb |")
		t.Logf("|---|---|---|---|---|---|---|")
		for _, r := range res {
			t.Logf("| %s | %s | %s | **%s** | %s | %s | %s |", r[0].name,
				stat(r, func(s sample) float64 { return perPkt(s.wUser, s.n) }),
				stat(r, func(s sample) float64 { return perPkt(s.wSys, s.n) }),
				stat(r, func(s sample) float64 { return perPkt(s.wUser+s.wSys, s.n) }),
				stat(r, func(s sample) float64 { return perPkt(s.machine, s.n) }),
				stat(r, func(s sample) float64 { return perPkt(s.wall, s.n) }),
				statf(r, func(s sample) float64 { return 100 * float64(s.pkts) / float64(s.n) }, "%.1f%%"))
			for _, c := range r {
				if c.sendErr != nil || c.pkts < int64(c.n)/2 {
					t.Errorf("%s: %v, %d of %d arrived", c.name, c.sendErr, c.pkts, c.n)
				}
			}
		}
	}
}

// TestRecvDrain measures each B reader at full batching: K packets (PROBE_K,
// default 8000: fits the 64 MiB socket buffer and a 64 MiB ring, whose
// blocks the 1 ms timer retires part-filled) are
// sent and queued first, and only then does the reader start and drain
// them, so no wake-up waits on the sender. Reader CPU per packet.
func TestRecvDrain(t *testing.T) {
	e := newEnv(t)
	_, reps := params()
	k := envInt("PROBE_K", 8000)
	k -= k % batch
	s := newRawSender(e.openRaw(e.nsA, outerSrc), innerSet(0))
	type rcv struct {
		name string
		open func() (receiver, func())
	}
	kinds := []rcv{
		{"raw recvmmsg-64", func() (receiver, func()) {
			r := e.openRawReceiver()
			return r, func() { e.closeNow(r.fd) }
		}},
		{"V2 ring 16384 frames", func() (receiver, func()) {
			comp := e.openRaw(e.nsB, outerDst)
			r := e.openRxRingV2(16384)
			return r, func() { r.close(); e.closeNow(comp) }
		}},
		{"V3 ring 256KiBx256", func() (receiver, func()) {
			comp := e.openRaw(e.nsB, outerDst)
			r := e.openRxRing(1<<18, 256, 1, false)
			return r, func() { r.close(); e.closeNow(comp) }
		}},
	}
	for _, off := range offloadSettings {
		e.applyOffloads(off.on)
		res := make([][]sample, len(kinds))
		for rep := range reps {
			for j := range kinds {
				i := (j + rep) % len(kinds)
				r, closeFn := kinds[i].open()
				for range k / batch {
					if err := s.send(); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(20 * time.Millisecond) // let the ring retire its last block
				c := sample{name: kinds[i].name, n: k}
				var stop atomic.Bool
				stop.Store(true)
				var cnt rxCount
				done := make(chan struct{})
				go func() {
					defer close(done)
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					var ru0, ru1 unix.Rusage
					_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
					r.loop(&stop, &cnt)
					_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
					c.rUser, c.rSys = tv(ru1.Utime)-tv(ru0.Utime), tv(ru1.Stime)-tv(ru0.Stime)
					c.rNvcsw = ru1.Nvcsw - ru0.Nvcsw
				}()
				<-done
				if rr, ok := r.(*rxRing); ok {
					p, d, f := rr.stats()
					c.ringDrops = int64(d)
					if d > 0 {
						t.Logf("%s: ring stats packets %d drops %d freezes %d", c.name, p, d, f)
					}
				}
				closeFn()
				c.pkts, c.calls = cnt.pkts.Load(), cnt.calls.Load()
				res[i] = append(res[i], c)
			}
		}
		t.Logf("offloads %s, K=%d queued first:", off.name, k)
		t.Logf("| B reader | **reader cpu** | reader usr | pkts per syscall | drained |")
		t.Logf("|---|---|---|---|---|")
		for _, r := range res {
			t.Logf("| %s | **%s** | %s | %s | %s |", r[0].name,
				stat(r, func(s sample) float64 { return perPkt(s.rUser+s.rSys, s.n) }),
				stat(r, func(s sample) float64 { return perPkt(s.rUser, s.n) }),
				stat(r, func(s sample) float64 { return float64(s.pkts) / float64(max(s.calls, 1)) }),
				statf(r, func(s sample) float64 { return 100 * float64(s.pkts) / float64(s.n) }, "%.1f%%"))
			for _, c := range r {
				if c.pkts < int64(c.n)*9/10 {
					t.Errorf("%s: drained %d of %d", c.name, c.pkts, c.n)
				}
			}
		}
	}
}

// TestRecvLatency: one packet at a time (PROBE_LAT packets, default 100,
// 2 ms apart), time from before the raw sendto in A until B's reader holds
// it: blocking recvfrom on the raw socket, against poll on a TPACKET_V3
// ring (1 ms block timeout), which hands a block over only when it is full
// or its timer retires it.
func TestRecvLatency(t *testing.T) {
	e := newEnv(t)
	cnt := envInt("PROBE_LAT", 100)
	raw := e.openRaw(e.nsA, outerSrc)
	pkt := innerSet(0)[0]
	dst := &unix.SockaddrInet4{Addr: outerDst}
	measure := func(name string, read func() bool) []time.Duration {
		var lat []time.Duration
		got := make(chan time.Time, 1)
		var stop atomic.Bool
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for !stop.Load() {
				if read() {
					got <- time.Now()
				}
			}
			close(got)
		}()
		for range cnt {
			t0 := time.Now()
			if err := unix.Sendto(raw, pkt, 0, dst); err != nil {
				t.Fatal(err)
			}
			select {
			case t1 := <-got:
				lat = append(lat, t1.Sub(t0))
			case <-time.After(time.Second):
				t.Errorf("%s: packet lost", name)
			}
			time.Sleep(2 * time.Millisecond)
		}
		stop.Store(true)
		for range got {
		}
		return lat
	}
	rx := e.openRawReceiver()
	buf := make([]byte, maxDgram)
	rawLat := measure("raw", func() bool {
		n, _, err := unix.Recvfrom(rx.fd, buf, 0)
		return err == nil && n > 0
	})
	e.closeNow(rx.fd)
	comp := e.openRaw(e.nsB, outerDst)
	ring := e.openRxRing(1<<18, 64, 1, false)
	pfd := []unix.PollFd{{Fd: int32(ring.fd), Events: unix.POLLIN}}
	ringLat := measure("ring", func() bool {
		if !ring.ready(ring.cur) {
			_, _ = unix.Poll(pfd, 50)
			return false
		}
		ring.frames(ring.cur, func([]byte, int) {})
		ring.release(ring.cur)
		ring.cur = (ring.cur + 1) % ring.blocks
		return true
	})
	ring.close()
	r2 := e.openRxRingV2(1024)
	pfd2 := []unix.PollFd{{Fd: int32(r2.fd), Events: unix.POLLIN}}
	v2Lat := measure("v2 ring", func() bool {
		if !r2.ready() {
			_, _ = unix.Poll(pfd2, 50)
			return false
		}
		r2.take(func([]byte, int) {})
		return true
	})
	r2.close()
	e.closeNow(comp)
	q := func(l []time.Duration) string {
		if len(l) == 0 {
			return "none"
		}
		slices.Sort(l)
		p := func(f float64) time.Duration { return l[int(f*float64(len(l)-1))].Round(time.Microsecond) }
		return fmt.Sprintf("p50 %v, p90 %v, max %v (%d packets)", p(0.5), p(0.9), p(1), len(l))
	}
	t.Logf("| B reader | A send -> B reader holds the packet |")
	t.Logf("| raw recvfrom (blocking) | %s |", q(rawLat))
	t.Logf("| V3 ring 256KiBx64, tov 1ms, poll | %s |", q(ringLat))
	t.Logf("| V2 ring 1024 frames, poll | %s |", q(v2Lat))
}
