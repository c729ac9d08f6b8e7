//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/flannel"
)

// The flannel end-to-end tests run real parts: Debian's etcd-server in the
// bridge namespace, flanneld v0.28.10 (built once by scripts/flanneld.sh)
// with the kernel's vxlan on the other nodes, and tunneld with
// peers_from: flannel. Traffic stays inside the namespaces: underlay
// 10.99.0.0/24, flannel network 10.244.0.0/16.
var (
	flannelNetwork = netip.MustParsePrefix("10.244.0.0/16")
	etcdAddr       = netip.MustParsePrefix("10.99.0.254/24")
	etcdURL        = "http://10.99.0.254:2379"
)

const flannelNetConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`

// flanneldBinary builds (or finds in the cache) the real flanneld.
func flanneldBinary(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../scripts/flanneld.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/flanneld.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: install %s (scripts/deps.sh does)", name, pkg)
	}
}

// cluster is one flannel network: the bridge with etcd, and the nodes.
type cluster struct {
	t        *testing.T
	br       *topo.Bridge
	etcdDir  string
	etcd     *exec.Cmd
	etcdDone chan error
	etcdLog  *topo.LogBuffer
	cli      *clientv3.Client
	offloads bool
	flanneld string
}

func newCluster(t *testing.T, offloads bool) *cluster {
	t.Helper()
	requireTool(t, "etcd", "etcd-server")
	requireTool(t, "iptables", "iptables")
	c := &cluster{t: t, offloads: offloads, flanneld: flanneldBinary(t), etcdDir: filepath.Join(t.TempDir(), "etcd")}
	c.br = topo.NewBridge(t, "fbr", etcdAddr)
	c.startEtcd()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{etcdURL},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialIn(c.br.NS, ctx, "tcp", addr)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.cli = cli
	t.Cleanup(func() { cli.Close() })
	c.put("/coreos.com/network/config", flannelNetConfig)
	return c
}

func (c *cluster) startEtcd() {
	t := c.t
	c.etcdLog = &topo.LogBuffer{}
	c.etcd = c.br.NS.Command(context.Background(), "etcd", "--name", "tp", "--data-dir", c.etcdDir,
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "tp=http://127.0.0.1:2380", "--log-level", "warn")
	c.etcd.Stdout, c.etcd.Stderr = c.etcdLog, c.etcdLog
	if err := c.etcd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	c.etcdDone = done
	go func() { done <- c.etcd.Wait() }()
	cmd := c.etcd
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("etcd:\n%s", c.etcdLog)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := dialIn(c.br.NS, context.Background(), "tcp", "10.99.0.254:2379")
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not listen within 15s: %v\n%s", err, c.etcdLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopEtcd stops the etcd server (its data stays for startEtcd).
func (c *cluster) stopEtcd() {
	c.etcd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.etcdDone:
	case <-time.After(10 * time.Second):
		c.etcd.Process.Kill()
		<-c.etcdDone
	}
}

func (c *cluster) put(key, value string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cli.Put(ctx, key, value); err != nil {
		c.t.Fatalf("etcd put %s: %v", key, err)
	}
}

func (c *cluster) del(key string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cli.Delete(ctx, key); err != nil {
		c.t.Fatalf("etcd delete %s: %v", key, err)
	}
}

func (c *cluster) get(key string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.cli.Get(ctx, key)
	if err != nil || len(r.Kvs) == 0 {
		c.t.Fatalf("etcd get %s: %v (%d keys)", key, err, len(r.Kvs))
	}
	return string(r.Kvs[0].Value)
}

// node adds a namespace on the bridge with underlay address 10.99.0.<i>.
func (c *cluster) node(label string, i int) *topo.NS {
	c.t.Helper()
	return attachNode(c.t, c.br, c.offloads, label, i)
}

// attachNode adds a namespace on br with underlay address 10.99.0.<i> on
// its eth0, the veth offloads on both ends as asked.
func attachNode(t *testing.T, br *topo.Bridge, offloads bool, label string, i int) *topo.NS {
	t.Helper()
	ns := topo.NewNS(t, label)
	port := br.Attach(t, ns, "eth0", netip.MustParsePrefix(fmt.Sprintf("10.99.0.%d/24", i)))
	if !offloads {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ns.SetOffloads(ctx, "eth0", false); err != nil {
			t.Fatal(err)
		}
		if err := br.NS.SetOffloads(ctx, port, false); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// flannelNode is a real flanneld on a node.
type flannelNodeProc struct {
	ns     *topo.NS
	cmd    *exec.Cmd
	done   chan error
	log    *topo.LogBuffer
	subnet netip.Prefix
	addr   netip.Addr // flannel.1's address: the subnet's first address
}

// startFlanneld runs flanneld in ns and waits for its subnet.env.
func (c *cluster) startFlanneld(ns *topo.NS) *flannelNodeProc {
	c.t.Helper()
	return runFlanneld(c.t, ns, c.flanneld, nil, "--etcd-endpoints", etcdURL)
}

// runFlanneld runs flanneld (bin) in ns with the subnet manager's args and
// environment, on eth0 without masquerading, and waits for its
// subnet.env.
func runFlanneld(t *testing.T, ns *topo.NS, bin string, environ []string, args ...string) *flannelNodeProc {
	t.Helper()
	env := filepath.Join(t.TempDir(), "subnet.env")
	f := &flannelNodeProc{ns: ns, log: &topo.LogBuffer{}, done: make(chan error, 1)}
	f.cmd = ns.Command(context.Background(), bin, append(args, "--iface", "eth0", "--subnet-file", env, "--ip-masq=false")...)
	if environ != nil {
		f.cmd.Env = append(os.Environ(), environ...)
	}
	f.cmd.Stdout, f.cmd.Stderr = f.log, f.log
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.done <- f.cmd.Wait() }()
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			t.Logf("flanneld in %s:\n%s", ns.Name, f.log)
		}
	})
	f.subnet = waitSubnetFile(t, env, f.done, f.log)
	f.addr = f.subnet.Addr()
	return f
}

func (f *flannelNodeProc) stop() {
	if f.cmd.Process == nil {
		return
	}
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-f.done:
		f.done <- err
	case <-time.After(10 * time.Second):
		f.cmd.Process.Kill()
	}
}

var flannelSubnetRE = regexp.MustCompile(`(?m)^FLANNEL_SUBNET=(\S+)$`)

// waitSubnetFile waits (bounded) for a subnet.env and returns the subnet
// it names (masked: FLANNEL_SUBNET holds the first address).
func waitSubnetFile(t *testing.T, path string, done chan error, log *topo.LogBuffer) netip.Prefix {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			if m := flannelSubnetRE.FindSubmatch(b); m != nil {
				p, err := netip.ParsePrefix(string(m[1]))
				if err != nil {
					t.Fatalf("%s: FLANNEL_SUBNET %q: %v", path, m[1], err)
				}
				return p.Masked()
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("exited before writing %s: %v\n%s", path, err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 20s\n%s", path, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tunneldNode is tunneld with peers_from: flannel on a node.
func (c *cluster) tunneldConfig(dir string) (cfgText, envPath string) {
	envPath = filepath.Join(dir, "subnet.env")
	return fmt.Sprintf(`device: {name: tp0}
encap: {preset: flannel-vxlan}
underlay: {local: 10.99.0.1}
peers_from: flannel
flannel:
  subnet_manager: etcd
  etcd_endpoints: [%s]
  subnet_file: %s
metrics: {listen: "127.0.0.1:9109"}
`, etcdURL, envPath), envPath
}

// fping pings dst from ns (count packets, interval apart) and returns
// sent and received; dst must lie in the test's ranges.
func fping(ctx context.Context, ns *topo.NS, dst netip.Addr, count int, interval time.Duration) (sent, recv int, out string) {
	if !flannelNetwork.Contains(dst) && !topo.Allowed(dst) {
		panic("fping: destination outside the test's ranges: " + dst.String())
	}
	b, _ := ns.Command(ctx, "ping", "-4", "-n", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-W", "1", dst.String()).CombinedOutput()
	out = string(b)
	if m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out); m != nil {
		sent, _ = strconv.Atoi(m[1])
		recv, _ = strconv.Atoi(m[2])
	}
	return sent, recv, out
}

// reachable waits (bounded) until one ping from ns to dst is answered and
// returns how long that took.
func reachable(t *testing.T, ns *topo.NS, dst netip.Addr, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, recv, out := fping(ctx, ns, dst, 1, 200*time.Millisecond)
		cancel()
		if recv == 1 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: %s not reachable within %s\n%s", ns.Name, dst, within, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noLoss pings count times and requires every answer.
func noLoss(t *testing.T, ns *topo.NS, dst netip.Addr, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if sent, recv, out := fping(ctx, ns, dst, count, 50*time.Millisecond); sent != count || recv != sent {
		t.Fatalf("%s -> %s: %d sent, %d received\n%s", ns.Name, dst, sent, recv, out)
	}
}

// noLossThrough pings dst from ns 80 times at 100 ms while the control
// plane (what) is stopped for 5 s, a second in, and requires every answer:
// forwarding must not depend on it.
func noLossThrough(t *testing.T, ns *topo.NS, dst netip.Addr, what string, stop, start func()) {
	t.Helper()
	type result struct {
		sent, recv int
		out        string
	}
	res := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		s, r, out := fping(ctx, ns, dst, 80, 100*time.Millisecond) // 8 s
		res <- result{s, r, out}
	}()
	time.Sleep(time.Second)
	stop()
	time.Sleep(5 * time.Second)
	start()
	r := <-res
	t.Logf("ping through the tunnel while %s was stopped 5 s: %d sent, %d received", what, r.sent, r.recv)
	if r.sent != 80 || r.recv != r.sent {
		t.Fatalf("lost pings while %s was away: %d sent, %d received\n%s", what, r.sent, r.recv, r.out)
	}
}

// routeGone waits (bounded) until ns has no route for p.
func routeGone(t *testing.T, ns *topo.NS, p netip.Prefix, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		out, _ := ns.Command(context.Background(), "ip", "-4", "route", "show", p.String()).CombinedOutput()
		if strings.TrimSpace(string(out)) == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: route %s still there after %s: %s", ns.Name, p, within, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one sample from tunneld's /metrics inside ns.
func metric(t *testing.T, ns *topo.NS, name string) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialIn(ns, ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := cl.Get("http://127.0.0.1:9109/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("metrics: no %s", name)
	return ""
}

// TestFlannelEtcd runs tunneld as a flannel node next to real flanneld
// nodes, with the veth offloads on (the kernel's default) and off.
func TestFlannelEtcd(t *testing.T) {
	topo.RequireRoot(t)
	for _, offloads := range []bool{true, false} {
		t.Run("offloads-"+onOff(offloads), func(t *testing.T) { flannelEtcdCase(t, offloads, false) })
	}
}

// TestFlannelEtcdKernelPath is TestFlannelEtcd with underlay.kernel_path:
// on: the node without the vxlan module joins the flanneld nodes, and the
// in-kernel fast path carries the traffic to and from them, its peer
// maps following the leases (a node that joins later is reachable, one
// that leaves is removed).
func TestFlannelEtcdKernelPath(t *testing.T) {
	topo.RequireRoot(t)
	for _, offloads := range []bool{true, false} {
		t.Run("offloads-"+onOff(offloads), func(t *testing.T) { flannelEtcdCase(t, offloads, true) })
	}
}

func flannelEtcdCase(t *testing.T, offloads, kernelPath bool) {
	c := newCluster(t, offloads)
	tunNS := c.node("ftun", 1)
	n2NS := c.node("fn2", 2)
	n3NS := c.node("fn3", 3)
	n2 := c.startFlanneld(n2NS)

	cfgText, envPath := c.tunneldConfig(t.TempDir())
	if kernelPath {
		cfgText = strings.Replace(cfgText, "underlay: {local: 10.99.0.1}", "underlay: {local: 10.99.0.1, kernel_path: on}", 1)
	}
	d := startTunneld(t, tunNS, "tp0", cfgText)
	if kernelPath && !strings.Contains(d.log.String(), "kernel path attached") {
		t.Fatalf("the kernel path is not attached:\n%s", d.log)
	}
	own := waitSubnetFile(t, envPath, d.done, d.log)
	ownAddr := own.Addr()
	n3 := c.startFlanneld(n3NS)
	t.Logf("subnets: tunneld %s, flanneld %s and %s", own, n2.subnet, n3.subnet)

	// The lease tunneld published is what flanneld writes for vxlan.
	lease := c.get("/coreos.com/network/subnets/" + flannel.SubnetKey(own))
	if want := `{"PublicIP":"10.99.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:0a:63:00:01"}}`; lease != want {
		t.Errorf("tunneld's lease\n got %s\nwant %s", lease, want)
	}
	// And flanneld's own lease is byte for byte what EncodeLease writes.
	raw := c.get("/coreos.com/network/subnets/" + flannel.SubnetKey(n2.subnet))
	if l, err := flannel.ParseLease(flannel.SubnetKey(n2.subnet), []byte(raw)); err != nil {
		t.Errorf("flanneld's lease %s: %v", raw, err)
	} else if enc := string(flannel.EncodeLease(l.PublicIP, l.Backend(), l.VNI, l.VtepMAC)); enc != raw {
		t.Errorf("flanneld wrote\n %s\nEncodeLease gives\n %s", raw, enc)
	}
	env, _ := os.ReadFile(envPath)
	if want := fmt.Sprintf("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=%s/%d\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n", ownAddr.Next(), own.Bits()); string(env) != want {
		t.Errorf("subnet.env\n got %q\nwant %q", env, want)
	}
	if out, _ := tunNS.Command(context.Background(), "ip", "-4", "addr", "show", "dev", "tp0").CombinedOutput(); !strings.Contains(string(out), ownAddr.String()+"/32") {
		t.Errorf("tp0 lacks %s/32:\n%s", ownAddr, out)
	}
	if out, _ := tunNS.Command(context.Background(), "ip", "-4", "route", "show", "10.244.0.0/16").CombinedOutput(); !strings.Contains(string(out), "dev tp0") {
		t.Errorf("no route for the network through tp0: %q", out)
	}

	t.Run("ping and TCP both ways", func(t *testing.T) {
		for _, n := range []*flannelNodeProc{n2, n3} {
			took := reachable(t, tunNS, n.addr, 15*time.Second)
			t.Logf("tunneld -> %s reachable after %s", n.addr, took.Round(time.Millisecond))
			noLoss(t, tunNS, n.addr, 20)
			reachable(t, n.ns, ownAddr, 15*time.Second)
			noLoss(t, n.ns, ownAddr, 20)
		}
		noLoss(t, n2NS, n3.addr, 5) // kernel to kernel, for reference
		for _, dir := range []struct {
			name     string
			from, to *topo.NS
			dst      netip.Addr
		}{{"tunneld->flanneld", tunNS, n2NS, n2.addr}, {"flanneld->tunneld", n2NS, tunNS, ownAddr}} {
			start := time.Now()
			tcpTransfer(t, dir.from, dir.to, dir.dst, 10<<20)
			el := time.Since(start)
			t.Logf("TCP 10 MB %s (offloads %s): %s, %.0f Mbit/s", dir.name, onOff(offloads), el.Round(time.Millisecond), 80/el.Seconds())
		}
		if kernelPath {
			sent, _ := strconv.ParseFloat(metric(t, tunNS, `tunneld_kernel_path_packets_total{reason="encap_sent"}`), 64)
			got, _ := strconv.ParseFloat(metric(t, tunNS, `tunneld_kernel_path_packets_total{reason="decap_received"}`), 64)
			t.Logf("kernel path: encap_sent %.0f, decap_received %.0f", sent, got)
			if sent < 50 || got < 50 { // per skb: super-packets make few
				t.Errorf("the kernel path carried %.0f out and %.0f in: the traffic went another way", sent, got)
			}
		}
	})

	t.Run("bad leases are counted and skipped", func(t *testing.T) {
		c.put("/coreos.com/network/subnets/10.244.250.0-24", `{"PublicIP":"10.99.0.77","BackendType":"vxlan"}`)
		c.put("/coreos.com/network/subnets/10.244.251.0-24", `{"PublicIP":"10.99.0.78","BackendType":"host-gw"}`)
		waitLog(t, d, "malformed flannel lease skipped")
		waitLog(t, d, "flannel lease of another backend ignored")
		noLoss(t, tunNS, n2.addr, 5)
		if v := metric(t, tunNS, "tunneld_flannel_malformed_leases_total"); v != "1" {
			t.Errorf("malformed leases %s, want 1", v)
		}
		if v := metric(t, tunNS, "tunneld_flannel_ignored_leases_total"); v != "1" {
			t.Errorf("ignored leases %s, want 1", v)
		}
		c.del("/coreos.com/network/subnets/10.244.250.0-24")
		c.del("/coreos.com/network/subnets/10.244.251.0-24")
	})

	n4NS := c.node("fn4", 4)
	var n4 *flannelNodeProc
	t.Run("a node that joins later is reachable", func(t *testing.T) {
		start := time.Now()
		n4 = c.startFlanneld(n4NS)
		took := reachable(t, tunNS, n4.addr, 15*time.Second)
		t.Logf("joined node %s reachable %s after flanneld started (%s after its lease)", n4.addr, time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		reachable(t, n4NS, ownAddr, 15*time.Second)
	})

	t.Run("a node that leaves is removed", func(t *testing.T) {
		if n4 == nil {
			t.Skip("no joined node")
		}
		n4.stop()
		start := time.Now()
		c.del("/coreos.com/network/subnets/" + flannel.SubnetKey(n4.subnet))
		routeGone(t, tunNS, n4.subnet, 10*time.Second)
		t.Logf("left node's route removed %s after its lease was deleted", time.Since(start).Round(time.Millisecond))
		noLoss(t, tunNS, n2.addr, 5)
	})

	t.Run("etcd away for 5s loses no ping; a node added after it returns is learned", func(t *testing.T) {
		noLossThrough(t, tunNS, n2.addr, "etcd", c.stopEtcd, c.startEtcd)
		n5NS := c.node("fn5", 5)
		start := time.Now()
		n5 := c.startFlanneld(n5NS)
		took := reachable(t, tunNS, n5.addr, 20*time.Second)
		t.Logf("node added after etcd returned reachable %s after flanneld started (%s after its lease)", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	})

	t.Run("tunneld restarted keeps its subnet", func(t *testing.T) {
		d.stop(t)
		os.Remove(envPath)
		start := time.Now()
		d2 := startTunneld(t, tunNS, "tp0", cfgText)
		again := waitSubnetFile(t, envPath, d2.done, d2.log)
		if again != own {
			t.Fatalf("restarted tunneld leased %s, had %s", again, own)
		}
		took := reachable(t, tunNS, n2.addr, 15*time.Second)
		noLoss(t, tunNS, n3.addr, 10)
		reachable(t, n3NS, ownAddr, 15*time.Second)
		t.Logf("restarted tunneld kept %s, forwarding %s after start (%s of it waiting for the first answer)", own, time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	})
}
