//go:build linux

package packetsock

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// offloadSettings are the two veth settings every benchmark here covers:
// the kernel's default for a new veth (rx/tx checksum, TSO, GSO on, GRO
// off) and everything off on both ends.
var offloadSettings = []struct {
	name string
	on   bool
}{{"default", true}, {"off", false}}

func (e *env) applyOffloads(on bool) {
	if on {
		e.resetOffloads()
	} else {
		e.setOffloads(false)
	}
}

// senders builds the five send paths over the same 64 inner packets, all
// sockets in A.
func (e *env) senders(inner [][]byte) []sender {
	raw := e.openRaw(e.nsA, outerSrc)
	return []sender{
		newRawSender(raw, inner),
		newPktSender(e.openPacket(e.nsA, e.ifA, false), false, inner, e.macB, e.macA),
		newPktSender(e.openPacket(e.nsA, e.ifA, true), true, inner, e.macB, e.macA),
		e.openTxRing(e.nsA, e.ifA, true, inner, e.macB, e.macA),
		e.openTxRing(e.nsA, e.ifA, false, inner, e.macB, e.macA),
	}
}

// collect reads B's raw socket until want datagrams or one idle timeout.
func collect(r *rawReceiver, want int, deadline time.Time) ([][]byte, error) {
	var got [][]byte
	for len(got) < want && time.Now().Before(deadline) {
		ds, err := r.read()
		if err != nil {
			return got, err
		}
		if ds == nil {
			break
		}
		for _, d := range ds {
			got = append(got, slices.Clone(d))
		}
	}
	return got, nil
}

// TestFormat sends one batch of 64 on every path, both offload settings,
// and checks in B (raw socket for protocol 4, and a TPACKET_V3 RX ring on
// vxb) that each arrives once, decodes as IPv4-in-IPv4/TCP with every
// checksum right and the payload intact. It logs the outer header each path
// produced: the kernel's (raw socket) against ours (packet socket).
func TestFormat(t *testing.T) {
	e := newEnv(t)
	rx := e.openRawReceiver()
	ring := e.openRxRing(1<<18, 8, 1, false)
	for _, off := range offloadSettings {
		e.applyOffloads(off.on)
		t.Logf("offloads %s (%s)", off.name, e.features())
		t.Logf("| send path | B raw socket got | B ring got | outer len | TTL | DF | outer id (first..last) | outer/inner IP csum | TCP csum | payload | seq |")
		for _, s := range e.senders(innerSet(uint32(1e6))) {
			_, _, _ = ring.stats()
			if err := s.send(); err != nil {
				t.Fatalf("%s: %v", s.name(), err)
			}
			got, err := collect(rx, batch, time.Now().Add(2*time.Second))
			if err != nil {
				t.Fatalf("%s: receive: %v", s.name(), err)
			}
			var ids []uint16
			var seqs []uint32
			var first outerInfo
			ok := 0
			for j, d := range got {
				o, err := decodeIPIP(d)
				if err != nil {
					t.Errorf("%s: datagram %d: %v", s.name(), j, err)
					continue
				}
				if j == 0 {
					first = o
				}
				ids = append(ids, o.ID)
				seqs = append(seqs, o.Seq)
				if o.OuterOK && o.InnerOK && o.TCPOK && o.PayloadOK && o.TotLen == outerLen && o.Segments == 1 &&
					o.Src == "10.99.0.1" && o.Dst == "10.99.0.2" && o.InnerSrc == "10.200.0.1" && o.InnerDs == "10.200.1.1" {
					ok++
				} else {
					t.Errorf("%s: datagram %d: %+v", s.name(), j, o)
				}
			}
			// The same frames through the ring (one block or a timeout).
			var frames int
			deadline := time.Now().Add(time.Second)
			for frames < batch && time.Now().Before(deadline) {
				if !ring.ready(ring.cur) {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				ring.frames(ring.cur, func(f []byte, orig int) {
					if len(f) != orig || len(f) != frameLen {
						t.Errorf("%s: ring frame %d/%d bytes", s.name(), len(f), orig)
						return
					}
					if o, err := decodeIPIP(f[ethLen:]); err != nil || !o.TCPOK || !o.PayloadOK || !o.OuterOK {
						t.Errorf("%s: ring frame: %v %+v", s.name(), err, o)
						return
					}
					frames++
				})
				ring.release(ring.cur)
				ring.cur = (ring.cur + 1) % ring.blocks
			}
			sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
			if ok != batch || frames != batch || len(seqs) != batch || seqs[0] != 1e6 || seqs[batch-1] != 1e6+63*seqStride {
				t.Errorf("%s: %d good datagrams, %d ring frames of %d sent (seq %v)", s.name(), ok, frames, batch, seqs)
			}
			idr := ""
			if len(ids) > 0 {
				idr = fmt.Sprintf("%d..%d", ids[0], ids[len(ids)-1])
			}
			t.Logf("| %s | %d | %d | %d | %d | %v | %s | %v/%v | %v | %v | %d.. |", s.name(), len(got), frames,
				first.TotLen, first.TTL, first.DF, idr, first.OuterOK, first.InnerOK, first.TCPOK, first.PayloadOK, first.Seq)
		}
	}
}

// TestBypass shows what the packet-socket paths skip in A, with pfifo_fast
// on vxa (a qdisc that counts), a tap (ETH_P_ALL packet socket, as tcpdump
// opens) on vxa, and then an iptables OUTPUT rule dropping protocol 4.
func TestBypass(t *testing.T) {
	e := newEnv(t)
	if _, err := run("ip", "netns", "exec", e.nsA, "iptables", "-L", "-n"); err != nil {
		t.Skipf("iptables unusable here: %v", err)
	}
	rx := e.openRawReceiver()
	e.setQdisc("pfifo_fast")
	tap := e.socketIn(e.nsA, unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK, 0, func(fd int) error {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: e.ifA})
	})
	tapCount := func() int {
		buf := make([]byte, 2048)
		n := 0
		for {
			m, from, err := unix.Recvfrom(tap, buf, 0)
			if err != nil {
				return n
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING && m >= ethLen+ipLen && buf[ethLen+9] == ipipProto {
				n++
			}
		}
	}
	t.Logf("| send path | qdisc (pfifo_fast) pkts | seen by a tap on vxa | B got | with OUTPUT -p 4 DROP: send | B got |")
	for _, s := range e.senders(innerSet(0)) {
		tapCount()
		q0 := e.qdiscPackets()
		if err := s.send(); err != nil {
			t.Fatalf("%s: %v", s.name(), err)
		}
		got, _ := collect(rx, batch, time.Now().Add(2*time.Second))
		time.Sleep(20 * time.Millisecond)
		q := e.qdiscPackets() - q0
		taps := tapCount()
		e.must("ip", "netns", "exec", e.nsA, "iptables", "-A", "OUTPUT", "-p", "4", "-j", "DROP")
		serr := s.send()
		got2, _ := collect(rx, batch, time.Now().Add(300*time.Millisecond))
		e.must("ip", "netns", "exec", e.nsA, "iptables", "-D", "OUTPUT", "-p", "4", "-j", "DROP")
		if tr, ok := s.(*txRing); ok && serr != nil {
			// A refused ring send leaves frames marked; start over clean.
			for i := range tr.frames {
				atomic.StoreUint32(&tr.hdr(i).Status, unix.TP_STATUS_AVAILABLE)
			}
		}
		es := "ok"
		if serr != nil {
			es = serr.Error()
		}
		t.Logf("| %s | %d | %d | %d | %s | %d |", s.name(), q, taps, len(got), es, len(got2))
		if len(got) != batch {
			t.Errorf("%s: B got %d of %d", s.name(), len(got), batch)
		}
		_, isRaw := s.(*rawSender)
		if isRaw && len(got2) != 0 {
			t.Errorf("raw: OUTPUT DROP did not drop (%d arrived)", len(got2))
		}
		if !isRaw && len(got2) != batch {
			t.Errorf("%s: with OUTPUT DROP, B got %d of %d", s.name(), len(got2), batch)
		}
	}
}

// TestOversize: what each path does with an outer packet one byte over the
// 1500-byte MTU (inner packet 1481 bytes): the raw socket fragments it
// (IP_PMTUDISC_WANT, tunneld's default) or refuses it (IP_PMTUDISC_DO);
// the packet socket refuses the frame (EMSGSIZE), the TX ring marks the
// frame TP_STATUS_WRONG_FORMAT and fails the send.
func TestOversize(t *testing.T) {
	e := newEnv(t)
	rx := e.openRawReceiver()
	ring := e.openRxRing(1<<18, 4, 1, false)
	const big = 1501
	in := make([]byte, big-ipLen)
	putIPv4(in, len(in), 1, 6, innerSrc, innerDst)
	raw := e.openRaw(e.nsA, outerSrc)
	dst := &unix.SockaddrInet4{Addr: outerDst}
	rx0 := linkCounter(e.nsB, "vxb", "rx_packets")
	err := unix.Sendto(raw, in, 0, dst)
	got, _ := collect(rx, 1, time.Now().Add(time.Second))
	frames := linkCounter(e.nsB, "vxb", "rx_packets") - rx0
	glen := 0
	if len(got) > 0 {
		glen = len(got[0])
	}
	// What a packet-socket receiver in B sees of it: the fragments.
	var frags []string
	for deadline := time.Now().Add(time.Second); len(frags) < 2 && time.Now().Before(deadline); {
		if !ring.ready(ring.cur) {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		ring.frames(ring.cur, func(f []byte, orig int) {
			ip := f[ethLen:]
			fo := int(ip[6])<<8 | int(ip[7])
			frags = append(frags, fmt.Sprintf("%d bytes MF=%v off=%d", orig, fo&0x2000 != 0, (fo&0x1fff)*8))
		})
		ring.release(ring.cur)
		ring.cur = (ring.cur + 1) % ring.blocks
	}
	t.Logf("| raw socket, PMTUDISC_WANT (default) | send err %v | B raw socket: %d datagram(s) of %d bytes from %d frames (ReasmOKs %d) | B V3 ring: %v |",
		err, len(got), glen, frames, snmp(e.nsB, "Ip", "ReasmOKs"), frags)
	if len(frags) != 2 {
		t.Errorf("ring in B: %v, want the two fragments", frags)
	}
	if err != nil || len(got) != 1 || glen != big || frames != 2 {
		t.Errorf("raw WANT: expected local fragmentation into 2 frames and one reassembled %d-byte datagram", big)
	}
	if err := unix.SetsockoptInt(raw, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		t.Fatal(err)
	}
	err = unix.Sendto(raw, in, 0, dst)
	t.Logf("| raw socket, PMTUDISC_DO | send err %v |", err)
	if !errors.Is(err, unix.EMSGSIZE) {
		t.Errorf("raw DO: %v, want EMSGSIZE", err)
	}

	frame := make([]byte, ethLen+big)
	tmpl := headTemplate(e.macB, e.macA)
	copy(frame, tmpl[:])
	putIPv4(frame[ethLen:], big, 7, ipipProto, outerSrc, outerDst)
	copy(frame[headLen:], in)
	for _, bypass := range []bool{false, true} {
		pk := e.openPacket(e.nsA, e.ifA, bypass)
		err := unix.Sendto(pk, frame, 0, nil)
		t.Logf("| packet socket bypass=%v, %d-byte frame | send err %v |", bypass, len(frame), err)
		if !errors.Is(err, unix.EMSGSIZE) {
			t.Errorf("packet socket: %v, want EMSGSIZE", err)
		}
	}
	r := e.openTxRing(e.nsA, e.ifA, true, [][]byte{in}, e.macB, e.macA)
	err = r.send()
	st := atomic.LoadUint32(&r.hdr(0).Status)
	t.Logf("| TX ring, %d-byte frame | send err %v | frame status %#x (WRONG_FORMAT=%#x) |", ethLen+big, err, st, unix.TP_STATUS_WRONG_FORMAT)
	if err == nil || st&unix.TP_STATUS_WRONG_FORMAT == 0 {
		t.Errorf("TX ring oversize: err %v status %#x", err, st)
	}
}

// sample is one measured run of n packets.
type sample struct {
	name                 string
	n                    int
	wUser, wSys, wall    time.Duration // sending thread
	machine              time.Duration // busy CPU of the whole machine, send start to drained
	rUser, rSys          time.Duration // B's reader thread
	rNvcsw               int64         // its voluntary context switches (sleeps)
	pkts, dgrams, calls  int64
	trunc, bad           int64
	vethDrops, sockDrops int64
	ringDrops            int64
	ipIn                 int64 // B's Ip InReceives during the run
	vxbRx                int64 // frames vxb received during the run
	sendErr              error
}

// measure sends n packets (n/64 batches) on a locked thread while r reads
// B on another locked thread. Writer CPU is getrusage(RUSAGE_THREAD) of the
// sending thread: it includes softirq work done on its way out, which on a
// veth is usually B's whole receive path too. machine is /proc/stat busy
// time from the first send until B stopped receiving.
func (e *env) measure(s sender, r receiver, n int) sample {
	c := sample{name: s.name(), n: n}
	d0, k0, i0 := linkCounter(e.nsA, "vxa", "tx_dropped"), rawDrops(e.nsB), snmp(e.nsB, "Ip", "InReceives")
	f0 := linkCounter(e.nsB, "vxb", "rx_packets")
	var rr *rxRing
	if x, ok := r.(*rxRing); ok {
		rr = x
		rr.stats()
	}
	r2, _ := r.(*rxRingV2)
	if r2 != nil {
		r2.stats()
	}
	var stop atomic.Bool
	var cnt rxCount
	var wg sync.WaitGroup
	ready := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var ru0, ru1 unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
		close(ready)
		r.loop(&stop, &cnt)
		_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
		c.rUser, c.rSys = tv(ru1.Utime)-tv(ru0.Utime), tv(ru1.Stime)-tv(ru0.Stime)
		c.rNvcsw = ru1.Nvcsw - ru0.Nvcsw
	}()
	<-ready
	done := make(chan struct{})
	var b0 uint64
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b0, _ = cpuStat()
		u0, s0 := threadCPU()
		t0 := time.Now()
		for i := 0; i < n/batch; i++ {
			if err := s.send(); err != nil {
				c.sendErr = err
				break
			}
		}
		c.wall = time.Since(t0)
		u1, s1 := threadCPU()
		c.wUser, c.wSys = u1-u0, s1-s0
	}()
	<-done
	// Until B has everything, or nothing more arrives for 50 ms.
	last, since := cnt.pkts.Load(), time.Now()
	for cnt.pkts.Load() < int64(n) && time.Since(since) < 50*time.Millisecond {
		time.Sleep(2 * time.Millisecond)
		if p := cnt.pkts.Load(); p != last {
			last, since = p, time.Now()
		}
	}
	b1, _ := cpuStat()
	c.machine = time.Duration(b1-b0) * time.Second / 100 // USER_HZ
	stop.Store(true)
	wg.Wait()
	c.pkts, c.dgrams, c.calls, c.trunc, c.bad = cnt.pkts.Load(), cnt.dgrams.Load(), cnt.calls.Load(), cnt.trunc.Load(), cnt.bad.Load()
	c.vethDrops = linkCounter(e.nsA, "vxa", "tx_dropped") - d0
	c.sockDrops = rawDrops(e.nsB) - k0
	c.ipIn = snmp(e.nsB, "Ip", "InReceives") - i0
	c.vxbRx = linkCounter(e.nsB, "vxb", "rx_packets") - f0
	if rr != nil {
		_, drops, _ := rr.stats()
		c.ringDrops = int64(drops)
	}
	if r2 != nil {
		_, drops := r2.stats()
		c.ringDrops = int64(drops)
	}
	if err, ok := cnt.lastErr.Load().(error); ok && c.sendErr == nil {
		c.sendErr = fmt.Errorf("receiver: %w", err)
	}
	return c
}

// stat is a median with its spread over the repetitions.
func stat(ss []sample, f func(sample) float64) string {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	sort.Float64s(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	if len(v) == 1 {
		return fmt.Sprintf("%.0f", m)
	}
	return fmt.Sprintf("%.0f [%.0f-%.0f]", m, v[0], v[len(v)-1])
}

func perPkt(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

func sendRow(ss []sample) string {
	s0 := ss[0]
	return fmt.Sprintf("| %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %d | %d |", s0.name,
		stat(ss, func(s sample) float64 { return perPkt(s.wUser, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.wSys, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.wUser+s.wSys, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.machine, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.wall, s.n) }),
		stat(ss, func(s sample) float64 { return perPkt(s.rUser+s.rSys, s.n) }),
		statf(ss, func(s sample) float64 { return 100 * float64(s.pkts) / float64(s.n) }, "%.1f%%"),
		stat(ss, func(s sample) float64 { return float64(s.pkts) / float64(max(s.calls, 1)) }),
		sum(ss, func(s sample) int64 { return s.vethDrops }), sum(ss, func(s sample) int64 { return s.sockDrops }))
}

func statf(ss []sample, f func(sample) float64, format string) string {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	sort.Float64s(v)
	if len(v) == 1 {
		return fmt.Sprintf(format, v[0])
	}
	return fmt.Sprintf(format+" [min "+format+"]", v[len(v)/2], v[0])
}

func sum(ss []sample, f func(sample) int64) int64 {
	var t int64
	for _, s := range ss {
		t += f(s)
	}
	return t
}

// params: PROBE_N packets per run (default 20 000: CI), PROBE_REPS
// repetitions (default 1).
func params() (n, reps int) {
	n = envInt("PROBE_N", 20000)
	n -= n % batch
	return max(n, batch), envInt("PROBE_REPS", 1)
}

func checkSamples(t *testing.T, ss []sample) {
	t.Helper()
	for _, s := range ss {
		if s.sendErr != nil {
			t.Errorf("%s: %v", s.name, s.sendErr)
		}
		if s.bad > 0 || s.trunc > 0 {
			t.Errorf("%s: %d malformed, %d truncated in B", s.name, s.bad, s.trunc)
		}
		// Not a benchmark assertion: a run that lost most packets measured
		// nothing useful.
		if s.pkts < int64(s.n)/2 {
			t.Errorf("%s: B got only %d of %d", s.name, s.pkts, s.n)
		}
	}
}

// TestSendCost is parts (a)-(c): per packet, the five send paths, both
// offload settings, with vxa's qdisc noqueue (veth default) and pfifo_fast
// (a qdisc for PACKET_QDISC_BYPASS to skip); B drains with a raw socket for
// protocol 4 and recvmmsg. Paths are interleaved within each repetition.
func TestSendCost(t *testing.T) {
	e := newEnv(t)
	n, reps := params()
	rx := e.openRawReceiver()
	ss := onlyPaths(e.senders(innerSet(0)))
	t.Logf("%s: kernel %s, %d CPUs, GOMAXPROCS %d, N=%d packets of %d bytes (outer IPv4) per run, %d repetition(s); ns per packet, median [min-max]; tunbench.done present: %v; loadavg %s",
		time.Now().UTC().Format(time.TimeOnly), uname(), runtime.NumCPU(), runtime.GOMAXPROCS(0), n, outerLen, reps, fileExists("/tmp/tunbench.done"), loadavg())
	defer func() { t.Logf("%s: done; loadavg %s", time.Now().UTC().Format(time.TimeOnly), loadavg()) }()
	for _, q := range []string{"noqueue", "pfifo_fast"} {
		for _, off := range offloadSettings {
			e.applyOffloads(off.on)
			e.setQdisc(q)
			res := make([][]sample, len(ss))
			for rep := range reps {
				for k := range ss {
					i := (k + rep) % len(ss)
					res[i] = append(res[i], e.measure(ss[i], rx, n))
				}
			}
			t.Logf("qdisc %s, offloads %s (%s):", q, off.name, e.features())
			t.Logf("| send path | writer usr | writer sys | **writer cpu** | machine busy | wall | B reader cpu | delivered | pkts per B recvmmsg | vxa tx drops | B raw drops |")
			t.Logf("|---|---|---|---|---|---|---|---|---|---|---|")
			for _, r := range res {
				t.Log(sendRow(r))
				checkSamples(t, r)
			}
		}
	}
	e.setQdisc("noqueue")
}

// onlyPaths keeps the send paths whose name contains PROBE_PATHS, when set
// (e.g. to profile one path with perf).
func onlyPaths(ss []sender) []sender {
	if only := os.Getenv("PROBE_PATHS"); only != "" {
		ss = slices.DeleteFunc(ss, func(s sender) bool { return !strings.Contains(s.name(), only) })
	}
	return ss
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
