package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/underlay"
)

// TestTunnelGSO runs tunneld with underlay.tunnel_gso: on against the
// kernel's vxlan device and against a tunneld without it, in both veth
// offload settings: TCP both ways checked by hash, ping and UDP, and the
// metrics must show super-packets sent whole through the TAP with no
// frame refused. With the veth offloads on the peer's kernel gets each
// frame uncut (one datagram holding a 64 KB inner packet with a partial
// checksum); with them off the kernel cuts it into wire-sized datagrams
// on the way out of the veth, and the peer must find every segment's
// checksum right (topo.NoChecksumErrors).
//
// The kernel peer in TAP mode runs on flannel's VNI and port (1, 8472);
// the tunneld peer also with pipeline: rings, where another goroutine
// writes the frames.
func TestTunnelGSO(t *testing.T) {
	requireTunnelGSO(t)
	for _, tc := range []struct{ peer, mode, pipeline string }{
		{"kernel", "tun", "direct"}, {"kernel", "tap", "direct"}, {"tunneld", "tun", "direct"}, {"tunneld", "tun", "rings"},
		{"tunneld-ipudp", "tun", "direct"},
	} {
		t.Run(tc.peer+"/"+tc.mode+"/"+tc.pipeline, func(t *testing.T) {
			bothOffloads(t, func(t *testing.T, offloads bool) { tunnelGSOCase(t, tc.peer, tc.mode, tc.pipeline, offloads) })
		})
	}
}

// requireTunnelGSO skips, saying why, on a kernel whose tun driver has no
// UDP-tunnel GSO (before 6.17): there tunnel_gso: on refuses to start, as
// it should. It opens a TAP in a namespace of its own to find out.
func requireTunnelGSO(t *testing.T) {
	t.Helper()
	topo.RequireRoot(t)
	ns, err := topo.BuildNS("gsoprobe")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	err = ns.Do(func() error {
		tap, err := underlay.OpenTunnelTAP("tpgso%d", 1)
		if err == nil {
			tap.Close()
		}
		return err
	})
	if errors.Is(err, underlay.ErrNoTunnelGSO) {
		t.Skipf("this kernel (%s) has no UDP-tunnel GSO in its tun driver: %v", uname(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func uname() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func tunnelGSOCase(t *testing.T, peer, mode, pipeline string, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	macA, macB := [6]byte{2, 0, 0, 0, 1, 1}, [6]byte{2, 0, 0, 0, 2, 2}
	vni, port := 42, 4789
	if mode == "tap" {
		vni, port = 1, 8472
	}
	enc := fmt.Sprintf("  type: vxlan\n  vni: %d\n  port: %d\n", vni, port)
	if peer == "tunneld-ipudp" {
		enc = "  type: ipudp\n"
	}
	cfgA := tunneldConfig(mode, enc, "pipeline: "+pipeline+"\n", la, lb, oa, ob, "02:00:00:00:01:01", "02:00:00:00:02:02")
	cfgA = withUnderlay(cfgA, "tunnel_gso: on")
	cfgA = withMetrics(cfgA)
	a := startTunneld(t, p.A, "tp0", cfgA)
	if !strings.Contains(a.log.String(), "TCP super-packets leave whole") {
		t.Fatalf("tunneld did not open the UDP-tunnel GSO TAP:\n%s", a.log)
	}
	if peer == "kernel" { // else a tunneld without the TAP
		if err := p.B.AddKernelVXLAN(topo.KernelVXLAN{
			Name: "vxlan0", VNI: uint32(vni), Port: port, Local: lb, Remote: la, MAC: macB, Addr: ob, MTU: 1450,
		}, oa.Addr(), macA); err != nil {
			t.Fatal(err)
		}
	} else {
		startTunneld(t, p.B, "tp0", tunneldConfig(mode, enc, "", lb, la, ob, oa, "02:00:00:00:02:02", "02:00:00:00:01:01"))
	}
	ping(t, p.A, ob.Addr())
	ping(t, p.B, oa.Addr())
	tcpTransfer(t, p.A, p.B, ob.Addr(), 32<<20)
	tcpTransfer(t, p.B, p.A, oa.Addr(), 4<<20)
	udpTransfer(t, p.A, p.B, ob.Addr(), 200)

	// The first super-packets go the socket way while the kernel resolves
	// the peer's MAC; the TAP takes over within a second.
	deadline := time.Now().Add(5 * time.Second)
	var text string
	for {
		text = scrape(t, p.A)
		if metricValue(t, text, "tunneld_tunnel_gso_frame_bytes_count") >= 10 || time.Now().After(deadline) {
			break
		}
		tcpTransfer(t, p.A, p.B, ob.Addr(), 8<<20)
	}
	frames := metricValue(t, text, "tunneld_tunnel_gso_frame_bytes_count")
	bytes := metricValue(t, text, "tunneld_tunnel_gso_frame_bytes_sum")
	refused := metricValue(t, text, "tunneld_drops_total", `reason="tunnel_gso_write"`, `direction="egress"`)
	t.Logf("TAP frames %.0f, %.1f MB, mean %.0f bytes; refused %.0f", frames, bytes/1e6, bytes/max(frames, 1), refused)
	if frames < 10 {
		t.Errorf("only %.0f super-packets went through the TAP", frames)
	}
	if refused != 0 {
		t.Errorf("the kernel refused %.0f TAP frames", refused)
	}
	if strings.Contains(a.log.String(), "refused a frame") {
		t.Errorf("the TAP was turned off:\n%s", a.log)
	}
}

// TestTunnelGSOAutoWithout: tunnel_gso: auto where it cannot apply (an
// IPv6 underlay) starts and forwards through the sockets, saying why; on
// is refused at load with the reason.
func TestTunnelGSOAutoWithout(t *testing.T) {
	bothOffloads(t, tunnelGSOAutoWithoutCase)
}

func tunnelGSOAutoWithoutCase(t *testing.T, offloads bool) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads, IPv6: true})
	la, lb := p.AddrA6.Addr(), p.AddrB6.Addr()
	oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
	enc := "  type: vxlan\n  vni: 42\n"
	cfgA := withUnderlay(tunneldConfig("tun", enc, "", la, lb, oa, ob, "", ""), "tunnel_gso: auto")
	a := startTunneld(t, p.A, "tp0", cfgA)
	startTunneld(t, p.B, "tp0", tunneldConfig("tun", enc, "", lb, la, ob, oa, "", ""))
	ping(t, p.A, ob.Addr())
	tcpTransfer(t, p.A, p.B, ob.Addr(), 4<<20)
	if !strings.Contains(a.log.String(), "UDP-tunnel GSO TAP not used") {
		t.Errorf("no word on why the TAP is not used:\n%s", a.log)
	}
	path := filepath.Join(t.TempDir(), "on.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(cfgA, "tunnel_gso: auto", "tunnel_gso: on", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tunneldBin, "--check-config", "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "underlay.tunnel_gso") {
		t.Errorf("tunnel_gso: on over IPv6 was not refused with the key named: %v\n%s", err, out)
	}
}
