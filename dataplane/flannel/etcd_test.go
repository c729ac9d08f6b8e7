package flannel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"tunnelplane/dataplane/config"
)

// These tests run Debian's etcd (package etcd-server) on the host's
// loopback, on free ports, with its data in t.TempDir(); they need no
// root. Without the binary they skip, unless TUNNELPLANE_REQUIRE_PRIV is
// set (CI), where a missing peer is a failure.

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a one-member etcd on loopback and returns its client URL
// and a client.
func startEtcd(t *testing.T) (string, *clientv3.Client) {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		msg := "etcd not installed (apt-get install etcd-server; scripts/deps.sh does)"
		if os.Getenv("TUNNELPLANE_REQUIRE_PRIV") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	var log strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	cmd := exec.Command("etcd", "--name", "t", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "t="+peer,
		"--log-level", "warn")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("etcd:\n%s", log.String())
			mu.Unlock()
		}
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "/probe")
		cancel()
		if err == nil {
			return client, cli
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func mustPut(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func opts(ep string, ip string) Options {
	return Options{Endpoints: []string{ep}, Prefix: "/coreos.com/network", PublicIP: addr(ip), Backend: BackendVXLAN,
		VNI: 1, Port: 8472, VtepMAC: config.DefaultMAC(addr(ip))}
}

func TestJoinRefusesBadNetworks(t *testing.T) {
	ep, cli := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tt := range []struct{ cfg, msg string }{
		{"", "no network config at /coreos.com/network/config"},
		{`{"Network":`, "not valid JSON"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`, `backend is "host-gw"`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":3}}`, "set encap.vni: 3"},
	} {
		if tt.cfg != "" {
			mustPut(t, cli, "/coreos.com/network/config", tt.cfg)
		}
		m, err := Join(ctx, opts(ep, "10.99.0.1"))
		if err == nil {
			m.Close()
			t.Fatalf("config %q: Join succeeded", tt.cfg)
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("config %q: %v, want %q", tt.cfg, err, tt.msg)
		}
	}
}

// collector records Run's snapshots.
type collector struct {
	mu    sync.Mutex
	snaps [][]config.Peer
}

func (c *collector) add(ps []config.Peer) { c.mu.Lock(); c.snaps = append(c.snaps, ps); c.mu.Unlock() }
func (c *collector) last() ([]config.Peer, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.snaps) == 0 {
		return nil, 0
	}
	return c.snaps[len(c.snaps)-1], len(c.snaps)
}

func (c *collector) wait(t *testing.T, what string, ok func([]config.Peer) bool) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, n := c.last()
		if n > 0 && ok(ps) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot with %s; last %v", what, ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMemberLifecycle(t *testing.T) {
	ep, cli := startEtcd(t)
	mustPut(t, cli, "/coreos.com/network/config", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	mustPut(t, cli, "/coreos.com/network/subnets/10.244.7.0-24", `{"PublicIP":"10.99.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:f4:07:00"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	m, err := Join(ctx, opts(ep, "10.99.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	first := m.Subnet()
	m.Close()
	if first == pfx("10.244.7.0/24") || !m.Network().Compatible(first) {
		t.Fatalf("leased %s", first)
	}
	// A restart reuses the lease of its PublicIP, and the etcd lease the
	// key had before is revoked, not left to its 24 h.
	st := new(Stats)
	o := opts(ep, "10.99.0.1")
	o.Stats, o.LeaseTTL = st, 3*time.Second
	m, err = Join(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Subnet() != first {
		t.Fatalf("restart leased %s, had %s", m.Subnet(), first)
	}
	ownKey := "/coreos.com/network/subnets/" + SubnetKey(first)
	r, err := cli.Get(ctx, ownKey)
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != `{"PublicIP":"10.99.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:0a:63:00:01"}}` {
		t.Fatalf("own lease %v %v", r, err)
	}
	if ls, err := cli.Leases(ctx); err != nil || len(ls.Leases) != 1 {
		t.Fatalf("etcd leases after restart: %v %v", ls, err)
	}

	var col collector
	runErr := make(chan error, 1)
	rctx, rcancel := context.WithCancel(ctx)
	go func() { runErr <- m.Run(rctx, col.add) }()
	col.wait(t, "the listed peer", func(ps []config.Peer) bool { return len(ps) == 1 && ps[0].Remote == addr("10.99.0.7") })

	// A burst of 100 leases is one or a few snapshots, not 100.
	_, before := col.last()
	// The subnets skip the member's own, which Join picked at random: a
	// write there would replace its lease, not add a peer.
	for i, third := 0, 100; i < 100; i, third = i+1, third+1 {
		if third == int(first.Addr().As4()[2]) {
			third++
		}
		v := string(EncodeLease(netip.AddrFrom4([4]byte{10, 99, 1, byte(i)}), BackendVXLAN, 1, [6]byte{2, 0, 0, 0, 1, byte(i)}))
		if _, err := cli.Put(ctx, fmt.Sprintf("/coreos.com/network/subnets/10.244.%d.0-24", third), v); err != nil {
			t.Fatal(err)
		}
	}
	after := col.wait(t, "101 peers", func(ps []config.Peer) bool { return len(ps) == 101 })
	if after-before > 5 {
		t.Errorf("100 lease writes gave %d snapshots", after-before)
	}
	t.Logf("100 lease writes: %d snapshots", after-before)

	// Malformed and foreign leases are counted and change nothing.
	mustPut(t, cli, "/coreos.com/network/subnets/10.244.7.0-24", `{"PublicIP":"10.99.0.7","BackendType":"vxlan"}`)
	foreign := "10.244.8.0-24"
	if first == pfx("10.244.8.0/24") {
		foreign = "10.244.9.0-24"
	}
	mustPut(t, cli, "/coreos.com/network/subnets/"+foreign, `{"PublicIP":"10.99.0.8","BackendType":"udp"}`)
	deadline := time.Now().Add(5 * time.Second)
	for st.MalformedLeases.Load() != 1 || st.IgnoredLeases.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("malformed %d ignored %d", st.MalformedLeases.Load(), st.IgnoredLeases.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ps, _ := col.last(); len(ps) != 101 || ps[0].Remote != addr("10.99.0.7") {
		t.Fatalf("bad leases changed the peers: %d", len(ps))
	}

	// A deleted lease drops its peer only.
	if _, err := cli.Delete(ctx, "/coreos.com/network/subnets/10.244.7.0-24"); err != nil {
		t.Fatal(err)
	}
	col.wait(t, "100 peers", func(ps []config.Peer) bool { return len(ps) == 100 })

	// Our own key deleted: put back, same subnet.
	if _, err := cli.Delete(ctx, ownKey); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		r, err := cli.Get(ctx, ownKey)
		if err == nil && len(r.Kvs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("own lease not recreated")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// With a 3 s TTL the lease is renewed every 2 s and outlives it.
	time.Sleep(4500 * time.Millisecond)
	if st.Renewals.Load() < 1 {
		t.Errorf("no renewal in 4.5 s with a 3 s TTL")
	}
	if r, err := cli.Get(ctx, ownKey); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("own lease expired: %v %v", r, err)
	}
	rcancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestTwoNodesRace: nodes that join at once get different subnets (the
// create transaction refuses the loser, which picks again).
func TestTwoNodesRace(t *testing.T) {
	ep, cli := startEtcd(t)
	mustPut(t, cli, "/coreos.com/network/config", `{"Network":"10.244.0.0/28","SubnetLen":30,"Backend":{"Type":"vxlan"}}`) // 3 subnets
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	subnets := make([]netip.Prefix, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := Join(ctx, opts(ep, fmt.Sprintf("10.99.0.%d", i+1)))
			if err == nil {
				subnets[i] = m.Subnet()
				m.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for i, s := range subnets {
		if errs[i] != nil || seen[s] {
			t.Fatalf("node %d: %s, %v (all: %v)", i, s, errs[i], subnets)
		}
		seen[s] = true
	}
	if _, err := Join(ctx, opts(ep, "10.99.0.9")); err == nil || !strings.Contains(err.Error(), "out of subnets") {
		t.Fatalf("fourth node: %v", err)
	}
}
