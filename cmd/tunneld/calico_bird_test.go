package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane"
)

// Calico IPIP against a real BIRD (Debian's bird2): each node runs BIRD with
// an iBGP session to the other and announces its pod block; BIRD's kernel
// protocol programs what it learns as Calico's BIRD does,
// `<block> via <node> proto bird onlink dev tunl0`, and tunneld
// (peers_from: routes, preset calico-ipip) turns those routes into peers.
// This kernel has no ipip module, so both nodes are tunnelds.
//
// Addresses: underlay 10.99.0.1-2, pod blocks 10.244.1.0/26 and
// 10.244.2.0/26, node tunnel addresses 10.244.1.1 and 10.244.2.1.

// birdConf is a node's BIRD configuration; docs/OPERATIONS.md shows the
// same file for a real node.
func birdConf(routerID, neighbor netip.Addr, block netip.Prefix) string {
	return fmt.Sprintf(`log stderr all;
router id %[1]s;

protocol device { scan time 1; }

# Learned pod blocks go to the kernel as Calico's BIRD programs them:
# <block> via <node> dev tunl0 onlink. tunneld reads them from there.
protocol kernel {
	scan time 1;
	ipv4 {
		import none;
		export filter {
			if source = RTS_BGP then {
				onlink = true;
				ifname = "tunl0";
				gw = bgp_next_hop;
				accept;
			}
			reject;
		};
	};
}

# This node's pod block (Calico: one blackhole route per block).
protocol static pod_block {
	ipv4;
	route %[3]s blackhole;
}

protocol bgp mesh {
	local %[1]s as 64512;
	neighbor %[2]s as 64512;
	direct;
	connect retry time 1;
	ipv4 {
		import all;
		export where proto = "pod_block";
		next hop self;
	};
}
`, routerID, neighbor, block)
}

// birdNode is one BIRD daemon in a namespace.
type birdNode struct {
	ns   *topo.NS
	sock string
	log  *topo.LogBuffer
}

func startBird(t *testing.T, ns *topo.NS, conf string) *birdNode {
	t.Helper()
	dir := t.TempDir()
	b := &birdNode{ns: ns, sock: filepath.Join(dir, "bird.ctl"), log: &topo.LogBuffer{}}
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "bird", "-f", "-c", path, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bird in %s: %v", ns.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("bird in %s:\n%s", ns.Name, b.log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := b.birdc(t, "show status"); err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("bird in %s did not open its control socket:\n%s", ns.Name, b.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *birdNode) birdc(t *testing.T, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := b.ns.Command(ctx, "birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// requireBird skips (or, under TUNNELPLANE_REQUIRE_PRIV, fails) without
// bird2; scripts/deps.sh installs it.
func requireBird(t *testing.T) {
	t.Helper()
	for _, c := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(c); err != nil {
			msg := c + " not found: apt-get install bird2 (scripts/deps.sh does)"
			if os.Getenv(topo.RequirePrivEnv) != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// calicoPing pings dst from ns and returns sent and received; dst must lie
// in the test's pod range.
func calicoPing(ns *topo.NS, dst netip.Addr, count int, interval time.Duration) (sent, recv int, out string) {
	if !calicoPods.Contains(dst) {
		panic("calicoPing: destination outside the test's ranges: " + dst.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(count)*interval+10*time.Second)
	defer cancel()
	b, _ := ns.Command(ctx, "ping", "-4", "-n", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-W", "1", dst.String()).CombinedOutput()
	out = string(b)
	if m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out); m != nil {
		sent, _ = strconv.Atoi(m[1])
		recv, _ = strconv.Atoi(m[2])
	}
	return sent, recv, out
}

var calicoPods = netip.MustParsePrefix("10.244.0.0/16")

// waitReachable waits (bounded) until a ping from ns to dst is answered.
func waitReachable(t *testing.T, ns *topo.NS, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, recv, _ := calicoPing(ns, dst, 1, 200*time.Millisecond); recv == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %s", ns.Name, dst)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tunl0Routes lists the routes through tunl0 in ns as `ip route` prints
// them.
func tunl0Routes(t *testing.T, ns *topo.NS) string {
	t.Helper()
	out, err := ns.Command(context.Background(), "ip", "-4", "route", "show", "dev", "tunl0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route in %s: %v\n%s", ns.Name, err, out)
	}
	return string(out)
}

func calicoTunneldConfig(local netip.Addr, addr string) string {
	return "device:\n  addresses: [" + addr + "]\nencap:\n  preset: calico-ipip\nunderlay:\n  local: " + local.String() +
		"\npeers_from: routes\nqueues: 1\nmetrics:\n  listen: \"\"\n"
}

// TestCalicoBIRD: routes from a real BIRD drive tunneld on both nodes; ping
// and 10 MB of TCP cross the IPIP tunnel both ways; a withdrawn block
// removes the peer and comes back when announced again. Both veth offload
// settings, with the user-space path and with underlay.kernel_path: on
// (the in-kernel fast path, its peers following BIRD's routes).
func TestCalicoBIRD(t *testing.T) {
	requireBird(t)
	for _, tc := range []struct{ offloads, kernelPath bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		offloads, kernelPath := tc.offloads, tc.kernelPath
		t.Run(fmt.Sprintf("offloads=%v/kernel_path=%v", offloads, kernelPath), func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
			cfg := func(local netip.Addr, addr string) string {
				c := calicoTunneldConfig(local, addr)
				if kernelPath {
					c = strings.Replace(c, "\nunderlay:\n", "\nunderlay:\n  kernel_path: on\n", 1)
					c = withMetrics(c)
				}
				return c
			}
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			blockA, blockB := netip.MustParsePrefix("10.244.1.0/26"), netip.MustParsePrefix("10.244.2.0/26")
			podA, podB := netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("10.244.2.1")
			// BIRD's kernel protocol needs tunl0 to exist: tunneld first.
			dA := startTunneld(t, p.A, "tunl0", cfg(la, "10.244.1.1/32"))
			dB := startTunneld(t, p.B, "tunl0", cfg(lb, "10.244.2.1/32"))
			if kernelPath && !strings.Contains(dA.log.String(), "kernel path attached") {
				t.Fatalf("the kernel path is not attached:\n%s", dA.log)
			}
			startBird(t, p.A, birdConf(la, lb, blockA))
			birdB := startBird(t, p.B, birdConf(lb, la, blockB))

			waitLog(t, dA, "learned=1")
			waitLog(t, dB, "learned=1")
			if r := tunl0Routes(t, p.A); !strings.Contains(r, "10.244.2.0/26 via 10.99.0.2 proto bird") || !strings.Contains(r, "onlink") {
				t.Fatalf("node A's tunl0 routes are not BIRD's onlink routes:\n%s", r)
			}
			waitReachable(t, p.A, podB)
			if sent, recv, out := calicoPing(p.A, podB, 20, 20*time.Millisecond); recv != sent || sent == 0 {
				t.Fatalf("ping A -> B: %d of %d\n%s", recv, sent, out)
			}
			if sent, recv, out := calicoPing(p.B, podA, 20, 20*time.Millisecond); recv != sent || sent == 0 {
				t.Fatalf("ping B -> A: %d of %d\n%s", recv, sent, out)
			}
			tcpTransfer(t, p.A, p.B, podB, 10<<20)
			tcpTransfer(t, p.B, p.A, podA, 10<<20)
			if kernelPath {
				for _, ns := range []*topo.NS{p.A, p.B} {
					sent, _ := strconv.ParseFloat(metric(t, ns, `tunneld_kernel_path_packets_total{reason="encap_sent"}`), 64)
					got, _ := strconv.ParseFloat(metric(t, ns, `tunneld_kernel_path_packets_total{reason="decap_received"}`), 64)
					t.Logf("%s kernel path: encap_sent %.0f, decap_received %.0f", ns.Name, sent, got)
					if sent < 50 || got < 50 { // per skb: super-packets make few
						t.Errorf("%s: the kernel path carried %.0f out and %.0f in", ns.Name, sent, got)
					}
				}
			}

			// Withdraw B's block: A's BIRD removes the route, tunneld the peer.
			if out, err := birdB.birdc(t, "disable", "pod_block"); err != nil {
				t.Fatalf("birdc disable: %v\n%s", err, out)
			}
			waitLog(t, dA, "learned=0")
			if r := tunl0Routes(t, p.A); strings.Contains(r, "10.244.2.0/26") {
				t.Fatalf("withdrawn block still routed on A:\n%s", r)
			}
			if _, recv, out := calicoPing(p.A, podB, 2, 200*time.Millisecond); recv != 0 {
				t.Fatalf("ping A -> B still answered after the withdrawal:\n%s", out)
			}
			// Announced again: the peer is back.
			if out, err := birdB.birdc(t, "enable", "pod_block"); err != nil {
				t.Fatalf("birdc enable: %v\n%s", err, out)
			}
			waitReachable(t, p.A, podB)
		})
	}
}

// TestTunl0ForeignState: tunneld shares tunl0 with others (Felix keeps its
// tunnel address on it, BIRD and Felix own routes through it). An address
// someone else put on the device survives a reload, and tunneld removes
// only routes it added itself: not a foreign route, and not one that
// replaced its own route to the same prefix.
func TestTunl0ForeignState(t *testing.T) {
	p := topo.NewPair(t, topo.PairOptions{Offloads: true})
	la := p.AddrA.Addr()
	cfg := func(peers string) string {
		return "encap:\n  preset: calico-ipip\nunderlay:\n  local: " + la.String() + "\nqueues: 1\nmetrics:\n  listen: \"\"\n" + peers
	}
	staticPeers := "peers:\n  - remote: 10.99.0.7\n    prefixes: [10.244.7.0/26]\n  - remote: 10.99.0.8\n    prefixes: [10.244.8.0/26]\n"
	d := startTunneld(t, p.A, "tunl0", cfg(staticPeers))
	h := p.A.Handle()
	link, err := h.LinkByName("tunl0")
	if err != nil {
		t.Fatal(err)
	}
	// Felix's tunnel address, added behind tunneld's back.
	felixAddr, _ := netlink.ParseAddr("10.244.1.1/32")
	if err := h.AddrAdd(link, felixAddr); err != nil {
		t.Fatal(err)
	}
	// A foreign route without a gateway (no peer), and a foreign route that
	// replaces tunneld's own route to 10.244.8.0/26.
	foreign, _ := netlink.ParseIPNet("10.244.9.0/26")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: foreign, Scope: netlink.SCOPE_LINK, Protocol: 4}); err != nil {
		t.Fatal(err)
	}
	routes := tunl0Routes(t, p.A)
	for _, want := range []string{"10.244.7.0/26 proto 171", "10.244.8.0/26 proto 171"} {
		if !strings.Contains(routes, want) {
			t.Fatalf("tunneld's route %q missing:\n%s", want, routes)
		}
	}
	replaced, _ := netlink.ParseIPNet("10.244.8.0/26")
	if err := h.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: replaced, Scope: netlink.SCOPE_LINK, Protocol: 4}); err != nil {
		t.Fatal(err)
	}

	// Reload with no peers: tunneld removes its own route 10.244.7.0/26 only.
	reloadWith(t, d, cfg(""), 1)
	routes = tunl0Routes(t, p.A)
	if strings.Contains(routes, "10.244.7.0/26") {
		t.Errorf("tunneld's own route 10.244.7.0/26 left after its peer went:\n%s", routes)
	}
	for _, want := range []string{"10.244.8.0/26 proto static", "10.244.9.0/26 proto static"} {
		if !strings.Contains(routes, want) {
			t.Errorf("foreign route %q removed by the reload:\n%s", want, routes)
		}
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range addrs {
		found = found || a.IPNet.String() == "10.244.1.1/32"
	}
	if !found {
		t.Errorf("the foreign address 10.244.1.1/32 did not survive the reload: %v", addrs)
	}
	// A static peer whose prefix already has a foreign route: tunneld leaves
	// that route as it is.
	reloadWith(t, d, cfg("peers:\n  - remote: 10.99.0.9\n    prefixes: [10.244.9.0/26]\n"), 2)
	if routes := tunl0Routes(t, p.A); !strings.Contains(routes, "10.244.9.0/26 proto static") {
		t.Errorf("tunneld replaced the foreign route to 10.244.9.0/26:\n%s", routes)
	}
	if dataplane.RouteProtocol != 171 {
		t.Fatalf("RouteProtocol = %d; update the test and docs/OPERATIONS.md", dataplane.RouteProtocol)
	}
}

// reloadWith rewrites d's config file and sends SIGHUP, then waits for the nth
// `reloaded` line.
func reloadWith(t *testing.T, d *daemon, yaml string, n int) {
	t.Helper()
	path := d.cmd.Args[len(d.cmd.Args)-1]
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.log.String(), "msg=reloaded") < n {
		if time.Now().After(deadline) {
			t.Fatalf("tunneld did not log reload %d:\n%s", n, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
