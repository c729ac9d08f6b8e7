package flannel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"tunnelplane/bench/kubeapi"
	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/config"
)

// flannelNode is a Node as flanneld v0.28.10 leaves it with the vxlan
// backend (the annotations its kube subnet manager writes).
func flannelNode(name, cidr, publicIP, mac string) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"node.alpha.kubernetes.io/ttl": "0",
			AnnotationBackendType:          "vxlan",
			AnnotationBackendData:          `{"VNI":1,"VtepMAC":"` + mac + `"}`,
			AnnotationPublicIP:             publicIP,
			AnnotationKubeManaged:          "true",
		}},
		Spec: v1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
}

func TestNodeLease(t *testing.T) {
	good := flannelNode("b", "10.244.2.0/24", "10.99.0.2", "aa:bb:cc:dd:ee:02")
	l, ok, err := NodeLease(good)
	if err != nil || !ok {
		t.Fatalf("NodeLease = %v, %v", ok, err)
	}
	if l.Subnet != netip.MustParsePrefix("10.244.2.0/24") || l.PublicIP != netip.MustParseAddr("10.99.0.2") || l.Backend() != "vxlan" ||
		!l.HasVtepMAC || l.VtepMAC != [6]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 2} || l.VNI != 1 {
		t.Errorf("lease %+v", l)
	}

	dual := good.DeepCopy()
	dual.Spec.PodCIDRs = []string{"fd00:244:2::/64", "10.244.2.0/24"}
	if l, _, err := NodeLease(dual); err != nil || l.Subnet != netip.MustParsePrefix("10.244.2.0/24") {
		t.Errorf("dual-stack podCIDRs: %v %v", l.Subnet, err)
	}
	onlyOld := good.DeepCopy()
	onlyOld.Spec.PodCIDRs = nil
	if l, _, err := NodeLease(onlyOld); err != nil || l.Subnet != netip.MustParsePrefix("10.244.2.0/24") {
		t.Errorf("spec.podCIDR only: %v %v", l.Subnet, err)
	}
	ipip := good.DeepCopy()
	ipip.Annotations[AnnotationBackendType] = "ipip"
	ipip.Annotations[AnnotationBackendData] = "null"
	if l, _, err := NodeLease(ipip); err != nil || l.Backend() != "ipip" || l.HasVtepMAC {
		t.Errorf("ipip: %+v %v", l, err)
	}

	unmanaged := good.DeepCopy()
	delete(unmanaged.Annotations, AnnotationKubeManaged)
	if _, ok, err := NodeLease(unmanaged); ok || err != nil {
		t.Errorf("unmanaged Node: ok %v err %v", ok, err)
	}

	for name, mutate := range map[string]func(n *v1.Node){
		"public-ip bogus":    func(n *v1.Node) { n.Annotations[AnnotationPublicIP] = "bogus" },
		"public-ip missing":  func(n *v1.Node) { delete(n.Annotations, AnnotationPublicIP) },
		"public-ip v6":       func(n *v1.Node) { n.Annotations[AnnotationPublicIP] = "fd00::2" },
		"public-ip mcast":    func(n *v1.Node) { n.Annotations[AnnotationPublicIP] = "239.1.1.1" },
		"backend-data null":  func(n *v1.Node) { n.Annotations[AnnotationBackendData] = "null" },
		"backend-data junk":  func(n *v1.Node) { n.Annotations[AnnotationBackendData] = `{"VNI":1,"VtepMAC":` },
		"vtep mac multicast": func(n *v1.Node) { n.Annotations[AnnotationBackendData] = `{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}` },
		"no podCIDR":         func(n *v1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = "", nil },
		"podCIDR junk":       func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.2.0"} },
		"podCIDR host bits":  func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.2.1/24"} },
		"podCIDR only v6":    func(n *v1.Node) { n.Spec.PodCIDRs = []string{"fd00:244:2::/64"} },
		"three podCIDRs":     func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.2.0/24", "10.244.3.0/24", "fd00::/64"} },
	} {
		n := good.DeepCopy()
		mutate(n)
		if _, ok, err := NodeLease(n); !ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ok %v err %v, want a malformed lease", name, ok, err)
		}
	}
}

// kubeTest is a real API server on loopback, a client, and a net-conf file.
type kubeTest struct {
	t       *testing.T
	s       *kubeapi.Server
	cs      *kubernetes.Clientset
	opt     Options
	netConf string
}

func newKubeTest(t *testing.T) *kubeTest {
	topo.RequireRoot(t) // the peers are built into the system cache, as scripts/deps.sh does
	s := kubeapi.Start(t, kubeapi.Options{})
	rc, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	nc := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(nc, []byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return &kubeTest{t: t, s: s, cs: cs, netConf: nc, opt: Options{
		RESTConfig: rc, NodeName: "node-a", NetConfPath: nc,
		PublicIP: netip.MustParseAddr("10.99.0.1"), Backend: BackendVXLAN, VNI: 1, Port: 8472,
		VtepMAC: [6]byte{2, 0, 10, 99, 0, 1}, Debounce: 20 * time.Millisecond,
	}}
}

func (k *kubeTest) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	k.t.Cleanup(cancel)
	return ctx
}

func (k *kubeTest) create(n *v1.Node) {
	k.t.Helper()
	if _, err := k.cs.CoreV1().Nodes().Create(k.ctx(), n, metav1.CreateOptions{}); err != nil {
		k.t.Fatalf("create Node %s: %v", n.Name, err)
	}
}

func (k *kubeTest) node(name string) *v1.Node {
	k.t.Helper()
	n, err := k.cs.CoreV1().Nodes().Get(k.ctx(), name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatalf("get Node %s: %v", name, err)
	}
	return n
}

// update changes a Node, retrying on a write conflict with the node's
// own status patches.
func (k *kubeTest) update(name string, f func(n *v1.Node)) {
	k.t.Helper()
	for i := 0; ; i++ {
		n := k.node(name)
		f(n)
		_, err := k.cs.CoreV1().Nodes().Update(k.ctx(), n, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || i == 5 {
			k.t.Fatalf("update Node %s: %v", name, err)
		}
	}
}

// runMember runs m and returns the peer snapshots it reports, and a stop
// (also run at cleanup) that ends Run and closes m.
func runMember(t *testing.T, m *KubeMember) (<-chan []config.Peer, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	snaps := make(chan []config.Peer, 64)
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx, func(p []config.Peer) { snaps <- p }) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Run: %v", err)
			}
			m.Close()
		})
	}
	t.Cleanup(stop)
	return snaps, stop
}

// waitPeers waits (bounded) for a snapshot whose remotes are want.
func waitPeers(t *testing.T, snaps <-chan []config.Peer, within time.Duration, want ...string) []config.Peer {
	t.Helper()
	deadline := time.After(within)
	var last []config.Peer
	for {
		select {
		case p := <-snaps:
			last = p
			var got []string
			for _, x := range p {
				got = append(got, x.Remote.String())
			}
			if slices.Equal(got, want) {
				return p
			}
		case <-deadline:
			t.Fatalf("no snapshot with peers %v within %s; last %+v", want, within, last)
		}
	}
}

// TestKubeMember runs the Kubernetes subnet manager against a real
// kube-apiserver: the annotations and condition it publishes, peers from
// other Nodes as they join, change, turn bad, lose their annotations and
// go, an API server outage, and a restart that keeps the VtepMAC.
func TestKubeMember(t *testing.T) {
	k := newKubeTest(t)
	// node-a (ours) has no podCIDR yet: JoinKube waits for it.
	k.create(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"}}})
	k.create(flannelNode("node-b", "10.244.2.0/24", "10.99.0.2", "aa:bb:cc:dd:ee:02"))
	k.create(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c", Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"}},
		Spec: v1.NodeSpec{PodCIDR: "10.244.3.0/24"}})

	type joined struct {
		m   *KubeMember
		err error
	}
	jc := make(chan joined, 1)
	st := new(Stats)
	opt := k.opt
	opt.Stats = st
	logs := new(topo.LogBuffer)
	opt.Log = slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))
	go func() {
		m, err := JoinKube(k.ctx(), opt)
		jc <- joined{m, err}
	}()
	time.Sleep(time.Second)
	select {
	case j := <-jc:
		t.Fatalf("JoinKube returned before node-a had a podCIDR: %v", j.err)
	default:
	}
	k.update("node-a", func(n *v1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24"} })
	j := <-jc
	if j.err != nil {
		t.Fatalf("JoinKube: %v", j.err)
	}
	m := j.m
	if m.Subnet() != netip.MustParsePrefix("10.244.1.0/24") || m.Network().Network != netip.MustParsePrefix("10.244.0.0/16") {
		t.Fatalf("subnet %s network %s", m.Subnet(), m.Network().Network)
	}
	own := k.node("node-a")
	for key, want := range map[string]string{
		AnnotationBackendType: "vxlan",
		AnnotationBackendData: `{"VNI":1,"VtepMAC":"02:00:0a:63:00:01"}`,
		AnnotationPublicIP:    "10.99.0.1",
		AnnotationKubeManaged: "true",
	} {
		if got := own.Annotations[key]; got != want {
			t.Errorf("annotation %s = %q, want %q", key, got, want)
		}
	}
	snaps, stopRun := runMember(t, m)
	p := waitPeers(t, snaps, 5*time.Second, "10.99.0.2")
	if p[0].Prefixes[0] != netip.MustParsePrefix("10.244.2.0/24") || p[0].MAC != [6]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 2} {
		t.Errorf("peer %+v", p[0])
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var cond *v1.NodeCondition
		for _, c := range k.node("node-a").Status.Conditions {
			if c.Type == v1.NodeNetworkUnavailable {
				cond = &c
			}
		}
		if cond != nil && cond.Status == v1.ConditionFalse && cond.Reason == "FlannelIsUp" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NetworkUnavailable=False condition: %+v", cond)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// node-c joins flannel (flanneld annotates it).
	k.update("node-c", func(n *v1.Node) {
		for key, v := range flannelNode("", "", "10.99.0.3", "aa:bb:cc:dd:ee:03").Annotations {
			n.Annotations[key] = v
		}
	})
	waitPeers(t, snaps, 5*time.Second, "10.99.0.2", "10.99.0.3")

	// Bad data is counted and skipped: a new Node with a bad address, and
	// node-b's backend data broken (its last good lease stays).
	bad := flannelNode("node-d", "10.244.4.0/24", "not-an-ip", "aa:bb:cc:dd:ee:04")
	k.create(bad)
	k.update("node-b", func(n *v1.Node) { n.Annotations[AnnotationBackendData] = `{"VNI":1,"VtepMAC":"zz"}` })
	for deadline := time.Now().Add(5 * time.Second); st.MalformedLeases.Load() < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("malformed leases counted: %d, want 2", st.MalformedLeases.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.update("node-b", func(n *v1.Node) { n.Annotations[AnnotationBackendData] = `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:22"}` })
	p = waitPeers(t, snaps, 5*time.Second, "10.99.0.2", "10.99.0.3")
	if p[0].MAC != [6]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x22} {
		t.Errorf("node-b's new VtepMAC not taken: %+v", p[0])
	}

	// Annotations removed, then a Node deleted: their peers go.
	k.update("node-c", func(n *v1.Node) {
		for _, key := range []string{AnnotationBackendType, AnnotationBackendData, AnnotationPublicIP, AnnotationKubeManaged} {
			delete(n.Annotations, key)
		}
	})
	waitPeers(t, snaps, 5*time.Second, "10.99.0.2")
	if err := k.cs.CoreV1().Nodes().Delete(k.ctx(), "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, snaps, 5*time.Second)

	// Someone strips our annotations: they come back.
	k.update("node-a", func(n *v1.Node) { delete(n.Annotations, AnnotationPublicIP) })
	for deadline := time.Now().Add(10 * time.Second); k.node("node-a").Annotations[AnnotationPublicIP] != "10.99.0.1"; {
		if time.Now().After(deadline) {
			t.Fatal("the stripped public-ip annotation was not published again")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The API server away for 3 s: nothing is lost, and a Node added
	// after it returns is learned.
	k.create(flannelNode("node-e", "10.244.5.0/24", "10.99.0.5", "aa:bb:cc:dd:ee:05"))
	waitPeers(t, snaps, 5*time.Second, "10.99.0.5")
	k.s.StopAPIServer()
	time.Sleep(3 * time.Second)
	select {
	case p := <-snaps:
		t.Fatalf("a snapshot while the API server was away: %+v", p)
	default:
	}
	k.s.StartAPIServer()
	k.create(flannelNode("node-f", "10.244.6.0/24", "10.99.0.6", "aa:bb:cc:dd:ee:06"))
	start := time.Now()
	waitPeers(t, snaps, 60*time.Second, "10.99.0.5", "10.99.0.6")
	t.Logf("a Node added after the API server returned learned in %s (resyncs %d, failed requests %d)", time.Since(start).Round(time.Millisecond), st.Resyncs.Load(), st.ControlPlaneErrors.Load())
	if st.ControlPlaneErrors.Load() == 0 {
		t.Error("no failed request counted while the API server was away")
	}
	for _, want := range []string{"Kubernetes API: Node request failed", "Kubernetes API: Nodes reachable again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the outage left no %q in the log", want)
		}
	}

	// A restart with another default MAC reuses the published one. The
	// running member stops first: it would put its own MAC back.
	stopRun()
	opt2 := k.opt
	opt2.VtepMAC = [6]byte{2, 0, 0, 0, 0, 9}
	m2, err := JoinKube(k.ctx(), opt2)
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if m2.VtepMAC() != k.opt.VtepMAC || m2.Subnet() != m.Subnet() {
		t.Errorf("restart: VtepMAC %s subnet %s, want %s and %s", macString(m2.VtepMAC()), m2.Subnet(), macString(k.opt.VtepMAC), m.Subnet())
	}
	// With device.mac set, the operator's MAC wins and is published.
	opt2.VtepMACSet = true
	m3, err := JoinKube(k.ctx(), opt2)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Close()
	if m3.VtepMAC() != opt2.VtepMAC || !strings.Contains(k.node("node-a").Annotations[AnnotationBackendData], "02:00:00:00:00:09") {
		t.Errorf("device.mac set: VtepMAC %s, annotation %s", macString(m3.VtepMAC()), k.node("node-a").Annotations[AnnotationBackendData])
	}
}

// JoinKube refuses at once what a restart cannot fix.
func TestJoinKubeRefuses(t *testing.T) {
	k := newKubeTest(t)
	k.create(flannelNode("node-a", "10.245.1.0/24", "10.99.0.1", "02:00:0a:63:00:01"))
	if _, err := JoinKube(k.ctx(), k.opt); err == nil || !strings.Contains(err.Error(), "not inside the flannel Network") {
		t.Errorf("podCIDR outside the network: %v", err)
	}
	o := k.opt
	o.Backend = BackendIPIP
	if _, err := JoinKube(k.ctx(), o); err == nil || !strings.Contains(err.Error(), `backend is "vxlan"`) {
		t.Errorf("backend mismatch: %v", err)
	}
	o = k.opt
	o.NetConfPath = filepath.Join(t.TempDir(), "missing.json")
	if _, err := JoinKube(k.ctx(), o); err == nil || !strings.Contains(err.Error(), "flannel.net_conf") {
		t.Errorf("missing net-conf: %v", err)
	}
	o = k.opt
	o.NodeName = ""
	if _, err := JoinKube(k.ctx(), o); err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Errorf("no node name: %v", err)
	}
}
