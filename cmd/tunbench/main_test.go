package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tunnelplane/bench"
	"tunnelplane/bench/topo"
)

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--scenarios", "nope"},
		{"--offloads", "maybe"},
		{"--duration", "10ms"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

func TestParseOffloads(t *testing.T) {
	got, err := parseOffloads("off, on,off")
	if err != nil || len(got) != 2 || got[0] != false || got[1] != true {
		t.Errorf("got %v %v", got, err)
	}
	if _, err := parseOffloads(","); err == nil {
		t.Error("empty list accepted")
	}
}

// TestSmoke runs tunbench --quick with direct, kernel-vxlan, ovs-vxlan
// (Open vSwitch's userspace datapath), tunneld-vxlan and tunneld-vxlan-gso
// (the UDP-tunnel GSO TAP), offloads off, and checks that every figure is there and
// positive. TUNBENCH_TUNNELD may name a prebuilt tunneld; otherwise the
// working tree's is built.
func TestSmoke(t *testing.T) {
	topo.RequireRoot(t)
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	jsonPath, svgPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.svg")
	args := []string{"--quick", "--scenarios", "direct,kernel-vxlan,ovs-vxlan,tunneld-vxlan,tunneld-vxlan-gso", "--offloads", "off",
		"--json", jsonPath, "--svg", svgPath}
	if bin := os.Getenv("TUNBENCH_TUNNELD"); bin != "" {
		args = append(args, "--tunneld", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(ctx, args, &out, &errb)
	t.Logf("tunbench ran %.1fs:\n%s", time.Since(start).Seconds(), out.String())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "tunneld-vxlan offloads=off: iperf3 TCP 4 streams") {
		t.Errorf("no progress lines:\n%s", errb.String())
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 5 {
		t.Fatalf("%d results, want 5", len(rep.Results))
	}
	pos := func(r bench.Result, what string, v float64) {
		t.Helper()
		if !(v > 0) {
			t.Errorf("%s: %s = %v, want > 0", r.Key(), what, v)
		}
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Key(), r.Error)
			continue
		}
		if r.TCP1 == nil || r.TCP4 == nil || r.UDP == nil || r.Ping == nil || r.Ratios == nil {
			t.Errorf("%s: missing figures: %+v", r.Key(), r)
			continue
		}
		pos(r, "TCP-1 Gbit/s", r.TCP1.Gbps())
		pos(r, "TCP-4 Gbit/s", r.TCP4.Gbps())
		pos(r, "UDP sent pps", r.UDP.SentPPS)
		pos(r, "UDP received pps", r.UDP.RecvPPS)
		pos(r, "ping median", r.Ping.MedianUS)
		pos(r, "ping p99", r.Ping.P99US)
		for name, p := range map[string]*float64{"TCP-1": r.Ratios.TCP1, "TCP-4": r.Ratios.TCP4, "UDP": r.Ratios.UDP,
			"ping median": r.Ratios.PingP50, "ping p99": r.Ratios.PingP99} {
			if p == nil {
				t.Errorf("%s: no %s ratio", r.Key(), name)
			} else {
				pos(r, name+" ratio", *p)
			}
		}
		if r.Machine == nil {
			t.Errorf("%s: no machine CPU figure", r.Key())
		} else {
			pos(r, "host CPU s/GB", r.Machine.CPUSecPerGB)
		}
		if r.Scenario == "ovs-vxlan" {
			if s := r.Resources; s == nil || len(s.PIDs) != 4 {
				t.Errorf("%s: resources %+v, want ovsdb-server and ovs-vswitchd on both sides", r.Key(), s)
			} else {
				pos(r, "OVS CPU s/GB", s.CPUSecPerGB)
			}
		}
		if r.Scenario != "tunneld-vxlan" {
			continue
		}
		s := r.Resources
		if s == nil {
			t.Errorf("%s: no resource figures", r.Key())
			continue
		}
		pos(r, "CPU s/GB", s.CPUSecPerGB)
		pos(r, "RSS MiB", s.RSSMiBMax)
		pos(r, "GC window", s.GCSeconds)
		// GC cycles are counted, and may rightly be zero: the data path
		// is meant not to allocate.
		if s.GCCycles < 0 || len(s.GCPerDaemon) != 2 {
			t.Errorf("%s: GC cycles %d per daemon %v", r.Key(), s.GCCycles, s.GCPerDaemon)
		}
	}
	if svg, err := os.ReadFile(svgPath); err != nil || !bytes.Contains(svg, []byte("tunneld-vxlan")) {
		t.Errorf("SVG: %v", err)
	}
}
