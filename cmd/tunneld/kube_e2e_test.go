//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"tunnelplane/bench/kubeapi"
	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/flannel"
)

// The Kubernetes end-to-end test: a real kube-apiserver v1.36.3 on etcd
// 3.6 (bench/kubeapi) in the bridge namespace at 10.99.0.253, Node objects
// as kubelets and kube-controller-manager would leave them (podCIDR,
// InternalIP, an annotation), flanneld v0.28.10 --kube-subnet-mgr with the
// kernel's vxlan on the other nodes, and tunneld with subnet_manager:
// kube. Traffic stays inside the namespaces.
var kubeAPIAddr = netip.MustParsePrefix("10.99.0.253/24")

type kubeCluster struct {
	t          *testing.T
	br         *topo.Bridge
	s          *kubeapi.Server
	cs         *kubernetes.Clientset
	netConf    string
	offloads   bool
	flanneld   string
	kubeconfig string
}

func newKubeCluster(t *testing.T, offloads bool) *kubeCluster {
	t.Helper()
	requireTool(t, "iptables", "iptables")
	c := &kubeCluster{t: t, offloads: offloads, flanneld: flanneldBinary(t)}
	c.br = topo.NewBridge(t, "kbr", kubeAPIAddr)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialIn(c.br.NS, ctx, network, addr)
	}
	c.s = kubeapi.Start(t, kubeapi.Options{Command: c.br.NS.Command, Dial: dial, Host: kubeAPIAddr.Addr(),
		EtcdPort: 2379, EtcdPeerPort: 2380, Port: 6443})
	c.kubeconfig = c.s.Kubeconfig
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Dial, rc.Timeout = dial, 10*time.Second
	if c.cs, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	c.netConf = filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(c.netConf, []byte(flannelNetConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *kubeCluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c.t.Cleanup(cancel)
	return ctx
}

// addNode creates Node node-<i> (podCIDR 10.244.<i>.0/24, InternalIP
// 10.99.0.<i>) and its namespace on the bridge.
func (c *kubeCluster) addNode(i int) *topo.NS {
	c.t.Helper()
	n := &v1.Node{
		// flanneld panics on a Node with no annotation; a kubelet's has some.
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i), Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"}},
		Spec:       v1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", i), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i)}},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: fmt.Sprintf("10.99.0.%d", i)}}},
	}
	if _, err := c.cs.CoreV1().Nodes().Create(c.ctx(), n, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create Node %s: %v", n.Name, err)
	}
	return attachNode(c.t, c.br, c.offloads, fmt.Sprintf("kn%d", i), i)
}

func (c *kubeCluster) getNode(name string) *v1.Node {
	c.t.Helper()
	n, err := c.cs.CoreV1().Nodes().Get(c.ctx(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatalf("get Node %s: %v", name, err)
	}
	return n
}

// startFlanneld runs flanneld --kube-subnet-mgr as Node node-<i>.
func (c *kubeCluster) startFlanneld(ns *topo.NS, i int) *flannelNodeProc {
	c.t.Helper()
	return runFlanneld(c.t, ns, c.flanneld, []string{fmt.Sprintf("NODE_NAME=node-%d", i)},
		"--kube-subnet-mgr", "--kubeconfig-file", c.kubeconfig, "--net-config-path", c.netConf)
}

func (c *kubeCluster) tunneldConfig(dir string) (cfgText, envPath string) {
	envPath = filepath.Join(dir, "subnet.env")
	return fmt.Sprintf(`device: {name: tp0}
encap: {preset: flannel-vxlan}
underlay: {local: 10.99.0.1}
peers_from: flannel
flannel:
  subnet_manager: kube
  kubeconfig: %s
  node_name: node-1
  net_conf: %s
  subnet_file: %s
metrics: {listen: "127.0.0.1:9109"}
`, c.kubeconfig, c.netConf, envPath), envPath
}

func networkAvailable(n *v1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == v1.NodeNetworkUnavailable {
			return cond.Status == v1.ConditionFalse
		}
	}
	return false
}

// TestFlannelKube runs tunneld as a node of flannel's Kubernetes subnet
// manager next to real flanneld nodes, with the veth offloads on (the
// kernel's default) and off.
func TestFlannelKube(t *testing.T) {
	topo.RequireRoot(t)
	for _, offloads := range []bool{true, false} {
		t.Run("offloads-"+onOff(offloads), func(t *testing.T) { flannelKubeCase(t, offloads) })
	}
}

func flannelKubeCase(t *testing.T, offloads bool) {
	c := newKubeCluster(t, offloads)
	tunNS := c.addNode(1)
	n2NS := c.addNode(2)
	n3NS := c.addNode(3)
	n2 := c.startFlanneld(n2NS, 2)

	cfgText, envPath := c.tunneldConfig(t.TempDir())
	d := startTunneld(t, tunNS, "tp0", cfgText)
	own := waitSubnetFile(t, envPath, d.done, d.log)
	ownAddr := own.Addr()
	n3 := c.startFlanneld(n3NS, 3)
	t.Logf("subnets: tunneld %s, flanneld %s and %s", own, n2.subnet, n3.subnet)
	if own != netip.MustParsePrefix("10.244.1.0/24") {
		t.Fatalf("tunneld took %s, not node-1's podCIDR 10.244.1.0/24", own)
	}

	// tunneld's Node carries what flanneld's carries, in flanneld's format.
	mine, theirs := c.getNode("node-1"), c.getNode("node-2")
	for key, want := range map[string]string{
		flannel.AnnotationBackendType: "vxlan",
		flannel.AnnotationBackendData: `{"VNI":1,"VtepMAC":"02:00:0a:63:00:01"}`,
		flannel.AnnotationPublicIP:    "10.99.0.1",
		flannel.AnnotationKubeManaged: "true",
	} {
		if got := mine.Annotations[key]; got != want {
			t.Errorf("tunneld's Node: %s = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{flannel.AnnotationBackendType, flannel.AnnotationKubeManaged} {
		if mine.Annotations[key] != theirs.Annotations[key] {
			t.Errorf("%s: tunneld wrote %q, flanneld %q", key, mine.Annotations[key], theirs.Annotations[key])
		}
	}
	if l, ok, err := flannel.NodeLease(theirs); err != nil || !ok || l.PublicIP.String() != "10.99.0.2" {
		t.Errorf("flanneld's Node does not parse as a lease: %+v %v %v (%v)", l, ok, err, theirs.Annotations)
	} else if bd := fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, net.HardwareAddr(l.VtepMAC[:]).String()); bd != theirs.Annotations[flannel.AnnotationBackendData] {
		t.Errorf("flanneld's backend-data %s, tunneld's format gives %s", theirs.Annotations[flannel.AnnotationBackendData], bd)
	}
	for deadline := time.Now().Add(10 * time.Second); !networkAvailable(c.getNode("node-1")); {
		if time.Now().After(deadline) {
			t.Fatalf("node-1 has no NetworkUnavailable=False: %+v", c.getNode("node-1").Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !networkAvailable(theirs) {
		t.Logf("flanneld's Node has no NetworkUnavailable=False yet: %+v", theirs.Status.Conditions)
	}
	env, _ := os.ReadFile(envPath)
	if want := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"; string(env) != want {
		t.Errorf("subnet.env\n got %q\nwant %q", env, want)
	}
	if out, _ := tunNS.Command(context.Background(), "ip", "-4", "addr", "show", "dev", "tp0").CombinedOutput(); !strings.Contains(string(out), ownAddr.String()+"/32") {
		t.Errorf("tp0 lacks %s/32:\n%s", ownAddr, out)
	}

	t.Run("ping and TCP both ways", func(t *testing.T) {
		for _, n := range []*flannelNodeProc{n2, n3} {
			took := reachable(t, tunNS, n.addr, 15*time.Second)
			t.Logf("tunneld -> %s reachable after %s", n.addr, took.Round(time.Millisecond))
			noLoss(t, tunNS, n.addr, 20)
			reachable(t, n.ns, ownAddr, 15*time.Second)
			noLoss(t, n.ns, ownAddr, 20)
		}
		for _, dir := range []struct {
			name     string
			from, to *topo.NS
			dst      netip.Addr
		}{{"tunneld->flanneld", tunNS, n2NS, n2.addr}, {"flanneld->tunneld", n3NS, tunNS, ownAddr}} {
			start := time.Now()
			tcpTransfer(t, dir.from, dir.to, dir.dst, 10<<20)
			el := time.Since(start)
			t.Logf("TCP 10 MB %s (offloads %s): %s, %.0f Mbit/s", dir.name, onOff(offloads), el.Round(time.Millisecond), 80/el.Seconds())
		}
	})

	t.Run("bad annotations are counted and skipped", func(t *testing.T) {
		bad := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-bad", Annotations: map[string]string{
			flannel.AnnotationKubeManaged: "true", flannel.AnnotationBackendType: "vxlan",
			flannel.AnnotationBackendData: `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:77"}`, flannel.AnnotationPublicIP: "not-an-address",
		}}, Spec: v1.NodeSpec{PodCIDR: "10.244.77.0/24"}}
		if _, err := c.cs.CoreV1().Nodes().Create(c.ctx(), bad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitLog(t, d, "malformed flannel lease skipped")
		noLoss(t, tunNS, n2.addr, 5)
		if v := metric(t, tunNS, "tunneld_flannel_malformed_leases_total"); v != "1" {
			t.Errorf("malformed leases %s, want 1", v)
		}
		if err := c.cs.CoreV1().Nodes().Delete(c.ctx(), "node-bad", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	n4NS := c.addNode(4)
	var n4 *flannelNodeProc
	t.Run("a Node added later is reachable", func(t *testing.T) {
		start := time.Now()
		n4 = c.startFlanneld(n4NS, 4)
		took := reachable(t, tunNS, n4.addr, 15*time.Second)
		t.Logf("added node %s reachable %s after flanneld started (%s after its subnet.env)", n4.addr, time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		reachable(t, n4NS, ownAddr, 15*time.Second)
	})

	t.Run("a Node deleted is removed", func(t *testing.T) {
		if n4 == nil {
			t.Skip("no added node")
		}
		n4.stop()
		start := time.Now()
		if err := c.cs.CoreV1().Nodes().Delete(c.ctx(), "node-4", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		routeGone(t, tunNS, n4.subnet, 10*time.Second)
		t.Logf("deleted Node's route removed %s after the delete", time.Since(start).Round(time.Millisecond))
		noLoss(t, tunNS, n2.addr, 5)
	})

	t.Run("API server away for 5s loses no ping; a Node added after it returns is learned", func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("tunneld's control-plane lines:\n%s", d.lines("Kubernetes API", "component=client-go", "peers from flannel"))
			}
		})
		noLossThrough(t, tunNS, n2.addr, "the API server", c.s.StopAPIServer, c.s.StartAPIServer)
		n5NS := c.addNode(5)
		start := time.Now()
		n5 := c.startFlanneld(n5NS, 5)
		took := reachable(t, tunNS, n5.addr, 45*time.Second)
		t.Logf("Node added after the API server returned reachable %s after flanneld started (%s after its subnet.env)", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		reachable(t, n5NS, ownAddr, 15*time.Second)
	})

	t.Run("tunneld restarted keeps its subnet and VtepMAC", func(t *testing.T) {
		before := c.getNode("node-1").Annotations[flannel.AnnotationBackendData]
		d.stop(t)
		os.Remove(envPath)
		d2 := startTunneld(t, tunNS, "tp0", cfgText)
		if again := waitSubnetFile(t, envPath, d2.done, d2.log); again != own {
			t.Fatalf("restarted tunneld took %s, had %s", again, own)
		}
		if after := c.getNode("node-1").Annotations[flannel.AnnotationBackendData]; after != before {
			t.Errorf("backend-data changed across a restart: %s -> %s", before, after)
		}
		reachable(t, tunNS, n3.addr, 15*time.Second)
		noLoss(t, n3NS, ownAddr, 10)
	})
}
