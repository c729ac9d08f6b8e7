package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tunnelplane/bench/topo"
)

// scrape fetches tunneld's /metrics from inside ns.
func scrape(t *testing.T, ns *topo.NS) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ns, ctx, network, addr)
		},
	}}
	resp, err := client.Get("http://127.0.0.1:9109/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of the series whose line starts with
// name{labels...}: the labels given must all be present.
func metricValue(t *testing.T, text, name string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("bad metric line %q", line)
		}
		return v
	}
	t.Fatalf("no series %s%v in:\n%s", name, labels, text)
	return 0
}

// sendUDPFrom sends payload to dst from src (an address of ns).
func sendUDPFrom(t *testing.T, ns *topo.NS, src netip.Addr, dst netip.AddrPort, payload []byte) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMetrics scrapes /metrics while traffic flows: the documented series
// exist and count, and malformed packets show up under their reasons.
func TestMetrics(t *testing.T) { bothOffloads(t, metricsCase) }

func metricsCase(t *testing.T, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	enc := "  type: vxlan\n  vni: 42\n"
	metricsOn := "metrics:\n  listen: 127.0.0.1:9109\n"
	cfgA := strings.Replace(tunneldConfig("tun", enc, "", la, lb, oa, ob, "", ""), "metrics:\n  listen: \"\"\n", metricsOn, 1)
	startTunneld(t, p.A, "tp0", cfgA)
	startTunneld(t, p.B, "tp0", tunneldConfig("tun", enc, "", lb, la, ob, oa, "", ""))
	ping(t, p.B, oa.Addr())
	tcpTransfer(t, p.B, p.A, oa.Addr(), 1<<20)

	// Malformed: a VXLAN header without the I flag, and one with the wrong
	// VNI, from the peer; a well-formed one from an address that is no peer.
	unknown := netip.MustParsePrefix("10.99.0.3/24")
	if err := p.B.AddAddr(p.IfB, unknown); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 8+14+20)
	vx := netip.AddrPortFrom(la, 4789)
	frame[0] = 0x00 // no I flag
	sendUDPFrom(t, p.B, lb, vx, frame)
	frame[0], frame[6] = 0x08, 0x07 // VNI 7 instead of 42
	sendUDPFrom(t, p.B, lb, vx, frame)
	frame[6] = 0
	frame[4], frame[5], frame[6] = 0, 0, 42
	sendUDPFrom(t, p.B, unknown.Addr(), vx, frame)

	deadline := time.Now().Add(5 * time.Second)
	var text string
	for {
		text = scrape(t, p.A)
		if metricValue(t, text, "tunneld_drops_total", `reason="unknown_peer"`, `direction="ingress"`) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	peer := fmt.Sprintf(`peer="%s"`, lb)
	for _, tc := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"tunneld_rx_packets_total", []string{peer}, 100},
		{"tunneld_rx_bytes_total", []string{peer}, 1 << 20},
		{"tunneld_tx_packets_total", []string{peer}, 10},
		{"tunneld_tx_bytes_total", []string{peer}, 1000},
		{"tunneld_drops_total", []string{`reason="bad_flags"`, `direction="ingress"`}, 1},
		{"tunneld_drops_total", []string{`reason="bad_vni"`, `direction="ingress"`}, 1},
		{"tunneld_drops_total", []string{`reason="unknown_peer"`, `direction="ingress"`}, 1},
		{"tunneld_peers", nil, 1},
		{"tunneld_pool_free_buffers", []string{`pool="small"`}, 1},
		{"tunneld_batch_size_count", []string{`stage="underlay_read"`}, 1},
		{"tunneld_batch_size_count", []string{`stage="device_write"`}, 1},
		{"tunneld_gso_segments_count", nil, 1},
		{"tunneld_gro_segments_count", nil, 1},
		{"tunneld_backend_info", []string{`backend="userspace"`, `encap="vxlan"`}, 1},
		{"tunneld_build_info", nil, 1},
		{"process_resident_memory_bytes", nil, 1},
	} {
		if v := metricValue(t, text, tc.name, tc.labels...); v < tc.min {
			t.Errorf("%s%v = %v, want >= %v", tc.name, tc.labels, v, tc.min)
		}
	}
	if v := metricValue(t, text, "tunneld_drops_total", `reason="bad_key"`, `direction="ingress"`); v != 0 {
		t.Errorf("bad_key drops = %v, want 0", v)
	}
	// With the veth offloads on, B's UDP GSO sends cross the veth uncut and
	// A reads them as super-packets (UDP GRO): some underlay read must have
	// carried more than one datagram, or this run tested no more than the
	// other.
	if offloads {
		sum, reads := metricValue(t, text, "tunneld_gro_segments_sum"), metricValue(t, text, "tunneld_gro_segments_count")
		if sum <= reads {
			t.Errorf("%v datagrams in %v underlay reads: no super-packet received with the veth offloads on", sum, reads)
		}
	}
}

// TestReloadKeepsTraffic pings across the tunnel while tunneld reloads 20
// times with other peers added and removed: nothing may be lost. A broken
// config is rejected, counted, and traffic keeps flowing.
func TestReloadKeepsTraffic(t *testing.T) { bothOffloads(t, reloadCase) }

func reloadCase(t *testing.T, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	enc := "  type: gre\n  key: 3\n"
	base := tunneldConfig("tun", enc, "", la, lb, oa, ob, "", "")
	base = withMetrics(base)
	d := startTunneld(t, p.A, "tp0", base)
	startTunneld(t, p.B, "tp0", tunneldConfig("tun", enc, "", lb, la, ob, oa, "", ""))
	ping(t, p.A, ob.Addr())

	path := d.cmd.Args[len(d.cmd.Args)-1]
	var wg sync.WaitGroup
	var pingOut string
	var pingErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pingOut, pingErr = p.A.PingWith(ctx, ob.Addr(), topo.PingOptions{Count: 150, Interval: 50 * time.Millisecond})
	}()
	for i := range 20 {
		cfg := base
		if i%2 == 0 { // add two more peers (nobody answers there; they only change the table)
			// tunneldConfig renders the peers list right before metrics.
			extra := fmt.Sprintf("  - remote: 10.99.0.%d\n    prefixes: [10.200.%d.0/24]\n  - remote: 10.99.0.%d\n    prefixes: [10.200.%d.0/24]\n", 10+i, 10+i, 11+i, 11+i)
			cfg = strings.Replace(cfg, "metrics:", extra+"metrics:", 1)
		}
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(250 * time.Millisecond)
	}
	os.WriteFile(path, []byte(base), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	wg.Wait()
	if pingErr != nil {
		t.Fatalf("ping during reloads: %v\n%s", pingErr, pingOut)
	}
	// A broken config: rejected, counted, traffic goes on.
	os.WriteFile(path, []byte(base+"bogus_key: 1\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	ping(t, p.A, ob.Addr())
	text := scrape(t, p.A)
	if v := metricValue(t, text, "tunneld_reload_failures_total"); v != 1 {
		t.Errorf("reload failures = %v, want 1", v)
	}
	if v := metricValue(t, text, "tunneld_reloads_total"); v < 20 {
		t.Errorf("reloads = %v, want >= 20", v)
	}
	if !strings.Contains(d.log.String(), "reload rejected") {
		t.Errorf("no log line for the rejected reload")
	}
}
