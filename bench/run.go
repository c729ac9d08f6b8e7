package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"tunnelplane/bench/topo"
)

// Options configure a harness run.
type Options struct {
	Scenarios    []Scenario    // nil: all
	Offloads     []bool        // underlay veth offload settings; nil: on, off
	Duration     time.Duration // each TCP and UDP run; 0: 5 s
	PingCount    int           // 0: 200
	PingInterval time.Duration // 0: 10 ms
	Tunneld      string        // tunneld binary (needed by tunneld scenarios)
	Progress     io.Writer     // progress lines; nil: discarded
}

// QuickOptions shortens every run (for tests): 1 s traffic, 50 pings.
func (o *Options) Quick() {
	o.Duration = time.Second
	o.PingCount = 50
}

func (o *Options) defaults() {
	if o.Scenarios == nil {
		o.Scenarios = Scenarios
	}
	if o.Offloads == nil {
		o.Offloads = []bool{true, false}
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.PingCount <= 0 {
		o.PingCount = 200
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 10 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// NeedsTunneld reports whether any selected scenario runs tunneld.
func NeedsTunneld(scs []Scenario) bool {
	for _, sc := range scs {
		if sc.Kind == KindTunneld || sc.Kind == KindMixed {
			return true
		}
	}
	return false
}

// Run measures every scenario under every offload setting, each on a fresh
// namespace pair that is torn down afterwards, and returns the report with
// ratios filled in. A failing scenario is recorded in its Result and the
// run goes on; a cancelled ctx stops the run (the report holds what was
// measured so far, and the error is ctx's).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if NeedsTunneld(o.Scenarios) && o.Tunneld == "" {
		return nil, errors.New("bench: tunneld scenarios need Options.Tunneld")
	}
	rep := &Report{
		Started:     time.Now(),
		Host:        hostInfo(),
		DurationSec: o.Duration.Seconds(),
		PingCount:   o.PingCount,
		PingEveryMS: float64(o.PingInterval) / float64(time.Millisecond),
		Baseline:    Baseline,
	}
	dir, err := os.MkdirTemp("", "tunbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	total := len(o.Scenarios) * len(o.Offloads)
	i := 0
	var runErr error
	for _, off := range o.Offloads {
		for _, sc := range o.Scenarios {
			i++
			if err := ctx.Err(); err != nil {
				runErr = err
				break
			}
			tag := fmt.Sprintf("[%d/%d] %s offloads=%s", i, total, sc.Name, OffloadName(off))
			progress := func(step string) { fmt.Fprintf(o.Progress, "%s: %s\n", tag, step) }
			start := time.Now()
			res := runScenario(ctx, sc, off, o, dir, progress)
			if res.Error != "" {
				progress("FAILED: " + firstLine(res.Error))
			} else {
				progress(fmt.Sprintf("done in %.1fs", time.Since(start).Seconds()))
			}
			rep.Results = append(rep.Results, res)
		}
		if runErr != nil {
			break
		}
	}
	rep.Finished = time.Now()
	rep.ComputeRatios()
	return rep, runErr
}

func hostInfo() HostInfo {
	h := HostInfo{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// runScenario builds a pair, connects it, measures, and tears it all down.
// When ctx ends the remaining steps are skipped and the result says
// "interrupted" instead of listing each cancelled step.
func runScenario(ctx context.Context, sc Scenario, offloads bool, o Options, dir string, progress func(string)) (res Result) {
	res = Result{Scenario: sc.Name, Offloads: offloads}
	var errs []error
	interrupted := false
	fail := func(step string, err error) {
		if ctx.Err() != nil {
			interrupted = true
			return
		}
		errs = append(errs, fmt.Errorf("%s: %w", step, err))
	}
	defer func() {
		if interrupted || ctx.Err() != nil {
			errs = append(errs, errors.New("interrupted"))
		}
		if len(errs) > 0 {
			res.Error = errors.Join(errs...).Error()
		}
	}()

	progress("topology")
	p, err := topo.Build(topo.PairOptions{Offloads: offloads})
	if err != nil {
		fail("topology", err)
		return
	}
	defer func() {
		if err := p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("teardown: %w", err))
		}
	}()
	// Everything in the scenario, tunneld included, ends with this context.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	dst, daemons, err := sc.setup(sctx, p, o.Tunneld, dir)
	if err != nil {
		fail("setup", err)
		return
	}
	defer func() {
		for _, d := range daemons {
			if err := d.Stop(); err != nil && !isSignalExit(err) {
				fail("stop "+d.Name, err)
			}
		}
	}()
	// ok reports whether to go on: not interrupted, tunnelds alive.
	ok := func(step string) bool {
		if ctx.Err() != nil {
			interrupted = true
			return false
		}
		for _, d := range daemons {
			if exited, err := d.Exited(); exited {
				fail(step, fmt.Errorf("%s in %s exited: %v\n%s", d.Name, d.NS.Name, err, d.Log))
				return false
			}
		}
		return true
	}

	progress("warm-up ping")
	if err := warmUp(sctx, p.A, dst); err != nil {
		if ok("warm-up") {
			for _, d := range daemons {
				err = fmt.Errorf("%w\n%s in %s:\n%s", err, d.Name, d.NS.Name, d.Log)
			}
		}
		fail("warm-up", err)
		return
	}

	gc0 := gcCounts(daemons)
	t0 := time.Now()
	// A packet the receiving kernel drops for its checksum is lost after
	// every counter of tunneld's: the scenario fails when any rises.
	snmpA0, _ := p.A.SNMP()
	snmpB0, _ := p.B.SNMP()
	defer func() {
		snmpA1, errA := p.A.SNMP()
		snmpB1, errB := p.B.SNMP()
		if errA != nil || errB != nil || snmpA0 == nil || snmpB0 == nil {
			return
		}
		res.ChecksumErrors = topo.ChecksumErrors(snmpA1) - topo.ChecksumErrors(snmpA0) + topo.ChecksumErrors(snmpB1) - topo.ChecksumErrors(snmpB0)
		if res.ChecksumErrors > 0 {
			fail("checksums", fmt.Errorf("the kernels dropped %d packets for bad checksums (A: %s; B: %s)", res.ChecksumErrors,
				topo.CsumErrorsLine(snmpA0, snmpA1), topo.CsumErrorsLine(snmpB0, snmpB1)))
		}
	}()

	if !ok("before ping") {
		return
	}
	progress(fmt.Sprintf("ping x%d every %v", o.PingCount, o.PingInterval))
	if r, err := RunPing(sctx, p.A, dst, o.PingCount, o.PingInterval); err != nil {
		fail("ping", err)
	} else {
		res.Ping = &r
	}

	if !ok("after ping") {
		return
	}
	cpu0 := cpuTimes(daemons)
	host0, hostErr := MachineCPU()
	progress(fmt.Sprintf("iperf3 TCP 1 stream %v", o.Duration))
	if r, err := RunIperf(sctx, IperfOptions{Client: p.A, Server: p.B, Dst: dst, Streams: 1, Duration: o.Duration}); err != nil {
		fail("tcp-1", err)
	} else {
		res.TCP1 = &r
	}
	cpu1 := cpuTimes(daemons)

	if !ok("after tcp-1") {
		return
	}
	progress(fmt.Sprintf("iperf3 TCP 4 streams %v", o.Duration))
	if r, err := RunIperf(sctx, IperfOptions{Client: p.A, Server: p.B, Dst: dst, Streams: 4, Duration: o.Duration}); err != nil {
		fail("tcp-4", err)
	} else {
		res.TCP4 = &r
	}
	cpu2 := cpuTimes(daemons)
	if host2, err := MachineCPU(); err == nil && hostErr == nil {
		res.Machine = machineCost(host2-host0, res.TCP1, res.TCP4)
	}

	if !ok("after tcp-4") {
		return
	}
	progress(fmt.Sprintf("UDP blaster 64 B %v", o.Duration))
	probe := startDropProbe(p.A, p.B, sc.egressDev(p))
	if r, err := RunUDP(sctx, UDPOptions{From: p.A, To: p.B, Dst: dst, Duration: o.Duration}); err != nil {
		fail("udp", err)
	} else {
		r.Drops = probe.done()
		res.UDP = &r
	}

	if len(daemons) > 0 && ok("after udp") {
		res.Resources = resources(daemons, gc0, time.Since(t0), cpu0, cpu1, cpu2, res.TCP1, res.TCP4)
	}
	return
}

// warmUp waits (up to 10 s) until dst answers pings: the first packets
// through a fresh tunnel may wait for ARP or neighbour resolution.
func warmUp(ctx context.Context, ns *topo.NS, dst netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		out, err := ns.PingWith(ctx, dst, topo.PingOptions{Count: 3, Interval: 50 * time.Millisecond, Timeout: time.Second})
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return last
}

func isSignalExit(err error) bool {
	return err != nil && strings.Contains(err.Error(), "signal: terminated")
}

func gcCounts(ds []*Daemon) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Log.GCs()
	}
	return out
}

func cpuTimes(ds []*Daemon) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i], _ = ProcCPU(d.PID())
	}
	return out
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

func machineCost(cpu float64, tcp1, tcp4 *TCPResult) *MachineCost {
	m := &MachineCost{CPUSeconds: cpu}
	for _, t := range []*TCPResult{tcp1, tcp4} {
		if t != nil {
			m.GB += float64(t.Bytes) / 1e9
		}
	}
	if m.GB > 0 {
		m.CPUSecPerGB = m.CPUSeconds / m.GB
	}
	return m
}

func resources(ds []*Daemon, gc0 []int64, window time.Duration, cpu0, cpu1, cpu2 []float64, tcp1, tcp4 *TCPResult) *Resources {
	r := &Resources{}
	for i, d := range ds {
		r.PIDs = append(r.PIDs, d.PID())
		rss, _ := ProcRSS(d.PID())
		r.RSSKiB = append(r.RSSKiB, rss)
		if m := float64(rss) / 1024; m > r.RSSMiBMax {
			r.RSSMiBMax = m
		}
		g := d.Log.GCs() - gc0[i]
		r.GCPerDaemon = append(r.GCPerDaemon, g)
		r.GCCycles += g
		r.CPUPerSide = append(r.CPUPerSide, cpu2[i]-cpu0[i])
	}
	r.CPUSecTCP1 = sum(cpu1) - sum(cpu0)
	r.CPUSecTCP4 = sum(cpu2) - sum(cpu1)
	var bytes int64
	if tcp1 != nil {
		bytes += tcp1.Bytes
		r.CPUSeconds += r.CPUSecTCP1
	}
	if tcp4 != nil {
		bytes += tcp4.Bytes
		r.CPUSeconds += r.CPUSecTCP4
	}
	r.GB = float64(bytes) / 1e9
	if r.GB > 0 {
		r.CPUSecPerGB = r.CPUSeconds / r.GB
	}
	r.GCSeconds = window.Seconds()
	if r.GCSeconds > 0 {
		r.GCPer10s = float64(r.GCCycles) / r.GCSeconds * 10
	}
	return r
}
