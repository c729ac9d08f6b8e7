package kubeapi_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"tunnelplane/bench/kubeapi"
	"tunnelplane/bench/topo"
)

// The flannel annotations flanneld v0.28.10 publishes on its Node with
// --kube-subnet-mgr (vxlan backend).
var flannelAnnotations = map[string]string{
	"flannel.alpha.coreos.com/backend-type":        "vxlan",
	"flannel.alpha.coreos.com/backend-data":        `{"VNI":1,"VtepMAC":"02:00:0a:63:00:01"}`,
	"flannel.alpha.coreos.com/public-ip":           "10.99.0.1",
	"flannel.alpha.coreos.com/kube-subnet-manager": "true",
}

// A real kube-apiserver on loopback, through client-go and the kubeconfig
// the helper writes: a Node as a kubelet registers it, the status PATCH a
// flannel node makes, a watch that sees it, and the same Node after the
// API server restarts on the same etcd.
func TestAPIServerNodes(t *testing.T) {
	// Root: the peers are built into the system cache as scripts/deps.sh
	// does for make test.
	topo.RequireRoot(t)
	t0 := time.Now()
	s := kubeapi.Start(t, kubeapi.Options{})
	t.Logf("etcd + kube-apiserver ready in %s at %s", time.Since(t0).Round(time.Millisecond), s.URL)

	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// flanneld panics on a Node without annotations: give it one, as a
	// kubelet's node does.
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "node-a",
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.99.0.1"}},
		},
	}
	created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	if created.Spec.PodCIDR != "10.244.1.0/24" || !hasInternalIP(created, "10.99.0.1") {
		t.Fatalf("created node: podCIDR %q addresses %+v", created.Spec.PodCIDR, created.Status.Addresses)
	}

	w, err := cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: created.ResourceVersion})
	if err != nil {
		t.Fatalf("watch nodes: %v", err)
	}
	defer w.Stop()

	// What a flannel node does with nodes/status (a strategic merge patch):
	// its annotations, and NetworkUnavailable=False.
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": flannelAnnotations},
		"status": map[string]any{"conditions": []corev1.NodeCondition{{
			Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
			Reason: "FlannelIsUp", Message: "Flannel is running on this node",
			LastTransitionTime: now, LastHeartbeatTime: now,
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "node-a", types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patch nodes/status: %v", err)
	}
	select {
	case ev := <-w.ResultChan():
		n, ok := ev.Object.(*corev1.Node)
		if ev.Type != watch.Modified || !ok || n.Annotations["flannel.alpha.coreos.com/public-ip"] != "10.99.0.1" {
			t.Errorf("watch: %s %T, want the patched node MODIFIED", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("watch: no event for the patch within 10s")
	}

	check := func(when string) {
		t.Helper()
		got, err := cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: get node: %v", when, err)
		}
		for k, v := range flannelAnnotations {
			if got.Annotations[k] != v {
				t.Errorf("%s: annotation %s = %q, want %q", when, k, got.Annotations[k], v)
			}
		}
		if got.Annotations["node.alpha.kubernetes.io/ttl"] != "0" {
			t.Errorf("%s: the patch dropped the node's own annotation: %v", when, got.Annotations)
		}
		if got.Spec.PodCIDR != "10.244.1.0/24" || !hasInternalIP(got, "10.99.0.1") {
			t.Errorf("%s: podCIDR %q addresses %+v", when, got.Spec.PodCIDR, got.Status.Addresses)
		}
		var cond *corev1.NodeCondition
		for i := range got.Status.Conditions {
			if got.Status.Conditions[i].Type == corev1.NodeNetworkUnavailable {
				cond = &got.Status.Conditions[i]
			}
		}
		if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != "FlannelIsUp" {
			t.Errorf("%s: NetworkUnavailable condition %+v, want False (FlannelIsUp)", when, cond)
		}
	}
	check("after the patch")

	// The API server goes away and comes back on the same etcd: the
	// objects stay (the end-to-end tests stop it for 5 s).
	t1 := time.Now() // the watch stays open, as an informer's would
	s.StopAPIServer()
	t.Logf("kube-apiserver stopped in %s", time.Since(t1).Round(time.Millisecond))
	t1 = time.Now()
	if _, err := cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{}); err == nil {
		t.Errorf("get node with the API server stopped: no error")
	}
	s.StartAPIServer()
	t.Logf("kube-apiserver restarted in %s", time.Since(t1).Round(time.Millisecond))
	check("after a restart")
}

func hasInternalIP(n *corev1.Node, ip string) bool {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address == ip {
			return true
		}
	}
	return false
}
