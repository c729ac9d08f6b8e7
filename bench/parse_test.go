package bench

import (
	"math"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestParseIperfJSON(t *testing.T) {
	data, err := os.ReadFile("testdata/iperf3_tcp1.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseIperfJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != 203161600 || r.SentBytes != 203161600 || r.Retransmits != 2 {
		t.Errorf("bytes %d sent %d retransmits %d", r.Bytes, r.SentBytes, r.Retransmits)
	}
	if math.Abs(r.Seconds-1.040669) > 1e-9 || math.Abs(r.Gbps()-1.5617768954393759) > 1e-9 {
		t.Errorf("seconds %v Gbit/s %v", r.Seconds, r.Gbps())
	}
}

func TestParseIperfJSONErrors(t *testing.T) {
	for name, in := range map[string]string{
		"iperf error": `{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}`,
		"empty end":   `{"start":{},"end":{}}`,
		"not json":    `iperf3: error - unable to connect`,
		"truncated":   `{"end":{"sum_received":{"bytes":`,
	} {
		if _, err := ParseIperfJSON([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	_, err := ParseIperfJSON([]byte(`{"error":"unable to connect to server: Connection refused"}`))
	if err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("iperf3's message not passed on: %v", err)
	}
}

func TestParsePing(t *testing.T) {
	data, err := os.ReadFile("testdata/ping.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParsePing(string(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{28, 45, 58, 43, 59}
	if len(r.RTTsUS) != len(want) {
		t.Fatalf("RTTs %v, want %v", r.RTTsUS, want)
	}
	for i := range want {
		if math.Abs(r.RTTsUS[i]-want[i]) > 1e-9 {
			t.Fatalf("RTTs %v, want %v", r.RTTsUS, want)
		}
	}
	if r.Sent != 5 || r.Received != 5 {
		t.Errorf("sent %d received %d", r.Sent, r.Received)
	}
	if r.MedianUS != 45 || r.MinUS != 28 || r.MaxUS != 59 {
		t.Errorf("median %v min %v max %v", r.MedianUS, r.MinUS, r.MaxUS)
	}
	if math.Abs(r.P99US-58.96) > 1e-9 {
		t.Errorf("p99 %v, want 58.96", r.P99US)
	}
}

func TestParsePingLossDupAndUnits(t *testing.T) {
	out := `PING 10.200.0.2 (10.200.0.2) 56(84) bytes of data.
64 bytes from 10.200.0.2: icmp_seq=1 ttl=64 time=1.50 ms
64 bytes from 10.200.0.2: icmp_seq=1 ttl=64 time=9.00 ms (DUP!)
64 bytes from 10.200.0.2: icmp_seq=3 ttl=64 time=250 us
64 bytes from 10.200.0.2: icmp_seq=4 ttl=64 time<1 ms

--- 10.200.0.2 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 3004ms
`
	r, err := ParsePing(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.RTTsUS; len(got) != 3 || got[0] != 1500 || got[1] != 250 || got[2] != 1000 {
		t.Errorf("RTTs %v", got)
	}
	if r.Sent != 4 || r.Received != 3 {
		t.Errorf("sent %d received %d", r.Sent, r.Received)
	}
	if _, err := ParsePing("connect: Network is unreachable\n"); err == nil {
		t.Error("no error for output without replies")
	}
	all := "3 packets transmitted, 0 received, 100% packet loss, time 2036ms\n"
	if _, err := ParsePing(all); err == nil {
		t.Error("no error when every packet was lost")
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {25, 2}, {50, 3}, {75, 4}, {100, 5}, {90, 4.6}, {99, 4.96}, {-3, 1}, {120, 5},
	} {
		if got := Percentile(xs, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if xs[0] != 5 {
		t.Error("Percentile sorted its input in place")
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("empty input: want NaN")
	}
	if Median([]float64{7}) != 7 || Median([]float64{1, 2}) != 1.5 {
		t.Error("median of 1 or 2 values")
	}
}

func TestProcParsers(t *testing.T) {
	// The command name holds spaces and a ')' to check field counting.
	stat := "4242 (tun d) x) S 1 4242 4242 0 -1 4194560 800 0 0 0 1234 567 0 0 20 0 9 0 100 1000000 2000 18446744073709551615\n"
	cpu, err := ParseProcStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(cpu-18.01) > 1e-9 {
		t.Errorf("cpu %v, want 18.01", cpu)
	}
	if _, err := ParseProcStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short stat: no error")
	}
	status := "Name:\ttunneld\nVmPeak:\t 1300000 kB\nVmRSS:\t   15756 kB\nRssAnon:\t 9000 kB\n"
	rss, err := ParseVmRSS([]byte(status))
	if err != nil || rss != 15756 {
		t.Errorf("VmRSS %d %v", rss, err)
	}
	if _, err := ParseVmRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("no VmRSS: no error")
	}
}

func TestLogWriterCountsGC(t *testing.T) {
	var w LogWriter
	in := "gc 1 @0.004s 62%: 48+0.48+0.054 ms clock, 97+0/0.46/0+0.10 ms cpu, 64->64->64 MB, 65 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"time=2026 level=INFO msg=forwarding\n" +
		"gc 2 @1.5s 1%: 0.1+0.2+0.01 ms clock, 0.2+0/0.1/0+0.02 ms cpu, 64->64->64 MB, 128 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)\n" +
		"scvg: 0 MB released\n"
	// Feed in awkward pieces: lines split across writes.
	for i := 0; i < len(in); i += 7 {
		end := min(i+7, len(in))
		w.Write([]byte(in[i:end]))
	}
	if w.GCs() != 2 {
		t.Errorf("GCs %d, want 2", w.GCs())
	}
	if got := w.String(); got != "time=2026 level=INFO msg=forwarding\nscvg: 0 MB released" {
		t.Errorf("log tail %q", got)
	}
}

func TestListensOn(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0200C80A:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100C80A:D0F2 0200C80A:1452 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
`
	if !ListensOn([]byte(table), 5201) {
		t.Error("5201 (0x1451) listens")
	}
	if ListensOn([]byte(table), 5202) {
		t.Error("5202 is an established connection's remote port, not a listener")
	}
}

func TestLookupScenarios(t *testing.T) {
	all, err := LookupScenarios("all")
	if err != nil || len(all) != len(Scenarios) {
		t.Fatalf("all: %d %v", len(all), err)
	}
	got, err := LookupScenarios("tunneld-vxlan, direct,direct")
	if err != nil || len(got) != 2 || got[0].Name != "direct" || got[1].Name != "tunneld-vxlan" {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := LookupScenarios("direct,bogus"); err == nil {
		t.Error("unknown scenario accepted")
	}
	if NeedsTunneld(got[:1]) || !NeedsTunneld(got) {
		t.Error("NeedsTunneld")
	}
}

func TestTunneldConfig(t *testing.T) {
	scs, err := LookupScenarios("tunneld-vxlan")
	if err != nil {
		t.Fatal(err)
	}
	sc := scs[0]
	got := TunneldConfig(sc.Mode, sc.Encap, mustAddr("10.99.0.1"), mustAddr("10.99.0.2"), OverlayA, OverlayB)
	want := "device:\n  name: tp0\n  mode: tun\n  addresses: [10.200.0.1/24]\n" +
		"encap:\n  type: vxlan\n  vni: 42\n  port: 4789\n" +
		"underlay:\n  local: 10.99.0.1\n" +
		"peers:\n  - remote: 10.99.0.2\n    prefixes: [10.200.0.2/32]\n" +
		"metrics:\n  listen: \"\"\n"
	if got != want {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestParseMachineCPU(t *testing.T) {
	stat := []byte("cpu  1000 20 300 90000 50 6 7 8 100 0\ncpu0 500 10 150 45000 25 3 3 4 50 0\nintr 1\n")
	got, err := ParseMachineCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(1000+20+300+6+7+8) / 100; got != want {
		t.Errorf("busy %v s, want %v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 x 3 4 5 6 7 8\n"} {
		if _, err := ParseMachineCPU([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := MachineCPU(); err != nil && runtime.GOOS == "linux" {
		t.Errorf("MachineCPU: %v", err)
	}
}
