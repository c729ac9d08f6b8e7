package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is everything one tunbench run measured.
type Report struct {
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Host        HostInfo  `json:"host"`
	DurationSec float64   `json:"duration_s"` // per TCP/UDP run
	PingCount   int       `json:"ping_count"`
	PingEveryMS float64   `json:"ping_interval_ms"`
	Baseline    string    `json:"baseline"`
	Results     []Result  `json:"results"`
}

// HostInfo identifies the machine a report was measured on.
type HostInfo struct {
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	Go       string `json:"go"`
	Hostname string `json:"hostname"`
}

// Result is one scenario under one underlay offload setting.
type Result struct {
	Scenario  string      `json:"scenario"`
	Offloads  bool        `json:"offloads"`
	Error     string      `json:"error,omitempty"`
	TCP1      *TCPResult  `json:"tcp1,omitempty"`
	TCP4      *TCPResult  `json:"tcp4,omitempty"`
	UDP       *UDPResult  `json:"udp,omitempty"`
	Ping      *PingResult `json:"ping,omitempty"`
	Resources *Resources  `json:"resources,omitempty"` // scenarios with daemons (tunneld, OVS) only
	// Machine is the whole machine's busy CPU time over the TCP runs, for
	// every scenario: the kernel's tunnels cost CPU in softirq, outside any
	// process, so this is the figure that compares like with like (it
	// includes iperf3 itself, and anything else the machine ran).
	Machine *MachineCost `json:"machine,omitempty"`
	Ratios  *Ratios      `json:"ratios,omitempty"` // against Baseline, same offload setting
	// ChecksumErrors: packets both kernels dropped for a bad TCP/UDP/ICMP
	// checksum during the measured phase (must be 0; /proc/net/snmp).
	ChecksumErrors int64 `json:"checksum_errors"`
}

// MachineCost is the machine's busy CPU seconds over the TCP runs and the
// bytes they moved.
type MachineCost struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	GB          float64 `json:"gb"`
	CPUSecPerGB float64 `json:"cpu_s_per_gb"`
}

// Resources are the daemons' (tunneld's, OVS's) costs during a scenario.
type Resources struct {
	PIDs []int `json:"pids"`
	// CPU time (user+system) of both tunnelds over the TCP runs, and the
	// bytes those runs moved.
	CPUSeconds  float64   `json:"cpu_seconds"`
	CPUSecTCP1  float64   `json:"cpu_seconds_tcp1"`
	CPUSecTCP4  float64   `json:"cpu_seconds_tcp4"`
	GB          float64   `json:"gb"` // 1e9 bytes
	CPUSecPerGB float64   `json:"cpu_s_per_gb"`
	RSSKiB      []int64   `json:"rss_kib"`     // VmRSS of each tunneld at the end
	RSSMiBMax   float64   `json:"rss_mib_max"` // the larger of the two
	GCCycles    int64     `json:"gc_cycles"`   // both tunnelds, over the measured phase
	GCSeconds   float64   `json:"gc_window_s"`
	GCPer10s    float64   `json:"gc_per_10s"`
	GCPerDaemon []int64   `json:"gc_cycles_per_daemon"`
	CPUPerSide  []float64 `json:"cpu_seconds_per_daemon"`
}

// Ratios are a result's figures divided by the baseline's (kernel-vxlan
// with the same offload setting). For throughput >1 is better, for
// latency >1 is worse. Nil when either figure is missing.
type Ratios struct {
	TCP1     *float64 `json:"tcp1,omitempty"`
	TCP4     *float64 `json:"tcp4,omitempty"`
	UDP      *float64 `json:"udp_rx,omitempty"`
	PingP50  *float64 `json:"ping_median,omitempty"`
	PingP99  *float64 `json:"ping_p99,omitempty"`
	Baseline string   `json:"baseline"`
}

// Key names a result in tables and charts.
func (r Result) Key() string { return r.Scenario + "/" + OffloadName(r.Offloads) }

// OffloadName is "on" or "off".
func OffloadName(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func ratio(v, base float64) *float64 {
	if v <= 0 || base <= 0 || math.IsNaN(v) || math.IsNaN(base) {
		return nil
	}
	r := v / base
	return &r
}

// ComputeRatios fills every result's Ratios against the baseline scenario
// measured with the same offload setting (when it was measured).
func (rep *Report) ComputeRatios() {
	if rep.Baseline == "" {
		rep.Baseline = Baseline
	}
	base := map[bool]*Result{}
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario == rep.Baseline && r.Error == "" {
			base[r.Offloads] = r
		}
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		b := base[r.Offloads]
		if b == nil {
			r.Ratios = nil
			continue
		}
		x := &Ratios{Baseline: b.Key()}
		if r.TCP1 != nil && b.TCP1 != nil {
			x.TCP1 = ratio(r.TCP1.BitsPerSecond, b.TCP1.BitsPerSecond)
		}
		if r.TCP4 != nil && b.TCP4 != nil {
			x.TCP4 = ratio(r.TCP4.BitsPerSecond, b.TCP4.BitsPerSecond)
		}
		if r.UDP != nil && b.UDP != nil {
			x.UDP = ratio(r.UDP.RecvPPS, b.UDP.RecvPPS)
		}
		if r.Ping != nil && b.Ping != nil {
			x.PingP50 = ratio(r.Ping.MedianUS, b.Ping.MedianUS)
			x.PingP99 = ratio(r.Ping.P99US, b.Ping.P99US)
		}
		r.Ratios = x
	}
}

// WriteJSON writes the report, indented, creating the directory.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, data []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, data, 0o644)
}

// Table renders the results as an aligned text table: one row per
// scenario and offload setting. Throughput and latency cells carry the
// ratio to the baseline in parentheses.
func (rep *Report) Table() string {
	head := []string{"scenario", "offl", "TCP-1 Gbit/s", "TCP-4 Gbit/s", "UDP rx kpps", "loss %",
		"ping p50 µs", "ping p99 µs", "CPU s/GB", "host s/GB", "RSS MiB", "GC/10s"}
	rows := [][]string{head}
	for _, r := range rep.Results {
		row := []string{r.Scenario, OffloadName(r.Offloads)}
		if r.Error != "" && r.TCP1 == nil && r.UDP == nil && r.Ping == nil {
			row = append(row, "error: "+firstLine(r.Error))
			rows = append(rows, row)
			continue
		}
		var x Ratios
		if r.Ratios != nil {
			x = *r.Ratios
		}
		cell := func(ok bool, v float64, prec int, rt *float64) string {
			if !ok {
				return "-"
			}
			s := fmt.Sprintf("%.*f", prec, v)
			if rt != nil {
				s += fmt.Sprintf(" (%.2fx)", *rt)
			}
			return s
		}
		row = append(row,
			cell(r.TCP1 != nil, gbps(r.TCP1), 2, x.TCP1),
			cell(r.TCP4 != nil, gbps(r.TCP4), 2, x.TCP4))
		if r.UDP != nil {
			row = append(row, cell(true, r.UDP.RecvPPS/1e3, 1, x.UDP), fmt.Sprintf("%.1f", r.UDP.LossPct))
		} else {
			row = append(row, "-", "-")
		}
		if r.Ping != nil {
			row = append(row, cell(true, r.Ping.MedianUS, 0, x.PingP50), cell(true, r.Ping.P99US, 0, x.PingP99))
		} else {
			row = append(row, "-", "-")
		}
		s := r.Resources
		if s != nil {
			row = append(row, cell(s.CPUSecPerGB > 0, s.CPUSecPerGB, 2, nil))
		} else {
			row = append(row, "-")
		}
		if m := r.Machine; m != nil {
			row = append(row, cell(m.CPUSecPerGB > 0, m.CPUSecPerGB, 2, nil))
		} else {
			row = append(row, "-")
		}
		if s != nil {
			row = append(row, fmt.Sprintf("%.1f", s.RSSMiBMax), fmt.Sprintf("%.1f", s.GCPer10s))
		} else {
			row = append(row, "-", "-")
		}
		if r.Error != "" {
			row = append(row, "error: "+firstLine(r.Error))
		}
		rows = append(rows, row)
	}
	var b strings.Builder
	writeAligned(&b, rows, 2)
	fmt.Fprintf(&b, "(x) = ratio to %s with the same offload setting (throughput: >1 faster; ping: >1 slower).\n", rep.Baseline)
	b.WriteString("CPU s/GB, RSS (the largest) and GC cycles are for the daemons (tunneld, or ovs-vswitchd + ovsdb-server);\n")
	b.WriteString("host s/GB is the whole machine's busy CPU over the TCP runs (kernel softirq, iperf3 and everything else running).\n")
	return b.String()
}

func gbps(r *TCPResult) float64 {
	if r == nil {
		return 0
	}
	return r.Gbps()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// writeAligned pads columns: the first `left` columns left-aligned, the
// rest right-aligned; cells past the header's width are appended as is.
func writeAligned(b *strings.Builder, rows [][]string, left int) {
	ncol := len(rows[0])
	w := make([]int, ncol)
	for _, r := range rows {
		for i := 0; i < len(r) && i < ncol; i++ {
			if n := len([]rune(r[i])); n > w[i] && !(len(r) < ncol && i == len(r)-1) {
				w[i] = n
			}
		}
	}
	for _, r := range rows {
		var parts []string
		for i, c := range r {
			if i >= ncol || (len(r) < ncol && i == len(r)-1 && i >= left) {
				parts = append(parts, c)
				continue
			}
			pad := strings.Repeat(" ", w[i]-len([]rune(c)))
			if i < left {
				parts = append(parts, c+pad)
			} else {
				parts = append(parts, pad+c)
			}
		}
		b.WriteString(strings.TrimRight(strings.Join(parts, "  "), " "))
		b.WriteByte('\n')
	}
}
