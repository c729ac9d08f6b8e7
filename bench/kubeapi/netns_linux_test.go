package kubeapi_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"tunnelplane/bench/kubeapi"
	"tunnelplane/bench/topo"
)

// The servers inside a test namespace, on an address other namespaces
// route to (as the end-to-end tests run them beside flanneld nodes), and a
// client that dials into that namespace.
func TestAPIServerInNamespace(t *testing.T) {
	topo.RequireRoot(t)
	addr := netip.MustParsePrefix("10.99.0.253/24")
	br := topo.NewBridge(t, "kapi", addr)
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := br.NS.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, a)
			return err
		})
		return c, err
	}
	s := kubeapi.Start(t, kubeapi.Options{
		Command: br.NS.Command, Dial: dial, Host: addr.Addr(),
		EtcdPort: 2379, EtcdPeerPort: 2380, Port: 6443,
	})
	if want := "https://10.99.0.253:6443"; s.URL != want {
		t.Errorf("URL %s, want %s", s.URL, want)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial, cfg.Timeout = dial, 10*time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The certificate is checked here (the kubeconfig's CA): it must name
	// the namespace's address.
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get namespace default: %v", err)
	}
	if ns.Status.Phase != "Active" {
		t.Errorf("namespace default: phase %q", ns.Status.Phase)
	}
}
