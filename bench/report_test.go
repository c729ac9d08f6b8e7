package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tunnelplane/dataplane/config"
)

// sampleReport has the baseline, a tunneld scenario and a failure, for
// both offload settings where it matters.
func sampleReport() *Report {
	tcp := func(gbps float64) *TCPResult {
		return &TCPResult{Streams: 1, Seconds: 5, Bytes: int64(gbps * 1e9 / 8 * 5), BitsPerSecond: gbps * 1e9}
	}
	udp := func(kpps float64) *UDPResult {
		r := &UDPResult{Payload: 64, Seconds: 5, Sent: int64(kpps * 2e3 * 5), Received: int64(kpps * 1e3 * 5)}
		r.finish()
		return r
	}
	ping := func(med, p99 float64) *PingResult {
		return &PingResult{Sent: 200, Received: 200, MedianUS: med, P99US: p99}
	}
	rep := &Report{
		Started:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:        HostInfo{Kernel: "6.1 <test> & co", CPUs: 2, Go: "go1.26"},
		DurationSec: 5,
		Results: []Result{
			{Scenario: "direct", Offloads: true, TCP1: tcp(13.8), TCP4: tcp(14), UDP: udp(800), Ping: ping(30, 60)},
			{Scenario: "kernel-vxlan", Offloads: true, TCP1: tcp(11), TCP4: tcp(12), UDP: udp(400), Ping: ping(40, 80),
				Machine: &MachineCost{CPUSeconds: 9.1, GB: 14.4, CPUSecPerGB: 0.63}},
			{Scenario: "tunneld-vxlan", Offloads: true, TCP1: tcp(2.75), TCP4: tcp(3), UDP: udp(100), Ping: ping(200, 800),
				Resources: &Resources{CPUSecPerGB: 3.5, RSSMiBMax: 15.5, GCPer10s: 0.4}},
			{Scenario: "kernel-vxlan", Offloads: false, TCP1: tcp(4.4), TCP4: tcp(4.5), UDP: udp(300), Ping: ping(50, 90)},
			{Scenario: "tunneld-gre", Offloads: false, Error: "setup: tunneld in tp-x exited early: exit status 1\nlog line"},
		},
	}
	rep.ComputeRatios()
	return rep
}

func TestRatios(t *testing.T) {
	rep := sampleReport()
	r := rep.Results[2].Ratios
	if r == nil || r.TCP1 == nil || math.Abs(*r.TCP1-0.25) > 1e-9 || math.Abs(*r.PingP50-5) > 1e-9 || math.Abs(*r.UDP-0.25) > 1e-9 {
		t.Fatalf("tunneld-vxlan ratios %+v", r)
	}
	if r.Baseline != "kernel-vxlan/on" {
		t.Errorf("baseline %q", r.Baseline)
	}
	if b := rep.Results[1].Ratios; b == nil || *b.TCP1 != 1 {
		t.Errorf("baseline against itself: %+v", b)
	}
	if f := rep.Results[4].Ratios; f == nil || f.TCP1 != nil {
		t.Errorf("failed result: ratios %+v", f)
	}
	// Without a baseline for a setting there are no ratios.
	rep.Results = rep.Results[:1]
	rep.Results[0].Offloads = false
	rep.ComputeRatios()
	if rep.Results[0].Ratios != nil {
		t.Error("ratios without a baseline")
	}
}

func TestTable(t *testing.T) {
	tab := sampleReport().Table()
	lines := strings.Split(strings.TrimRight(tab, "\n"), "\n")
	if len(lines) != 1+5+3 {
		t.Fatalf("%d lines:\n%s", len(lines), tab)
	}
	for _, want := range []string{
		"TCP-1 Gbit/s", "ping p99 µs", "CPU s/GB", "host s/GB", "0.63", "RSS MiB", "GC/10s",
		"2.75 (0.25x)", "200 (5.00x)", "100.0 (0.25x)", "3.50", "15.5", "0.4",
		"11.00 (1.00x)", "4.40 (1.00x)", "error: setup: tunneld in tp-x exited early: exit status 1",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "log line") {
		t.Error("table shows more than the error's first line")
	}
	// Columns line up: every complete row is as wide as the header.
	w := len([]rune(lines[0]))
	for _, l := range lines[1:5] {
		if len([]rune(l)) != w {
			t.Errorf("row width %d, header %d:\n%s", len([]rune(l)), w, tab)
		}
	}
	// A scenario with no resources shows dashes there.
	if !strings.Contains(lines[1], " -  ") && !strings.HasSuffix(lines[1], "-") {
		t.Errorf("direct row: %q", lines[1])
	}
}

func TestJSONRoundTrip(t *testing.T) {
	rep := sampleReport()
	path := filepath.Join(t.TempDir(), "sub", "r.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 5 || back.Results[2].TCP1.BitsPerSecond != 2.75e9 || *back.Results[2].Ratios.TCP1 != 0.25 {
		t.Errorf("round trip lost data: %+v", back.Results[2])
	}
}

func TestSVGWellFormed(t *testing.T) {
	rep := sampleReport()
	svg := rep.SVG()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var rects, bars, texts int
	var root string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("namespace %q", se.Name.Space)
				}
			}
			switch se.Name.Local {
			case "rect":
				rects++
				for _, a := range se.Attr {
					if a.Name.Local == "height" && strings.HasPrefix(a.Value, "-") {
						t.Errorf("negative height %s", a.Value)
					}
				}
			case "title":
				bars++
			case "text":
				texts++
			}
		}
	}
	if root != "svg" {
		t.Errorf("root element %q", root)
	}
	// 3 bars with offloads on, 1 with offloads off (tunneld-gre failed).
	if bars != 4 {
		t.Errorf("%d bars, want 4", bars)
	}
	for _, want := range []string{"tunneld-vxlan", "kernel-vxlan", "offloads off", "&lt;test&gt; &amp; co", "13.80"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// An empty report still renders.
	if err := xml.Unmarshal((&Report{}).SVG(), new(struct{})); err != nil {
		t.Errorf("empty report: %v", err)
	}
}

func TestNiceScale(t *testing.T) {
	for _, c := range []struct{ v, top, step float64 }{
		{13.8, 15, 5}, {0.75, 1, 0.2}, {4.4, 5, 1}, {0, 1, 0.2}, {100, 120, 20},
	} {
		top, step := niceScale(c.v)
		if math.Abs(top-c.top) > 1e-9 || math.Abs(step-c.step) > 1e-9 {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", c.v, top, step, c.top, c.step)
		}
		if top < c.v {
			t.Errorf("niceScale(%v): top %v below the value", c.v, top)
		}
	}
}

// Every tunneld scenario's rendered config is accepted by tunneld's own
// config parser.
func TestTunneldConfigsParse(t *testing.T) {
	for _, sc := range Scenarios {
		if sc.Kind != KindTunneld {
			continue
		}
		y := TunneldConfig(sc.Mode, sc.Encap, mustAddr("10.99.0.1"), mustAddr("10.99.0.2"), OverlayA, OverlayB)
		cfg, err := config.Parse(sc.Name+".yaml", []byte(y))
		if err != nil {
			t.Errorf("%s: %v\n%s", sc.Name, err, y)
			continue
		}
		if cfg.Metrics.Listen != "" {
			t.Errorf("%s: metrics listen %q, want off", sc.Name, cfg.Metrics.Listen)
		}
	}
}
