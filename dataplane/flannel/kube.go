package flannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"tunnelplane/dataplane/config"
)

// The annotations flanneld's Kubernetes subnet manager keeps on each Node
// (prefix flannel.alpha.coreos.com, its default).
const (
	AnnotationBackendType       = "flannel.alpha.coreos.com/backend-type"
	AnnotationBackendData       = "flannel.alpha.coreos.com/backend-data"
	AnnotationPublicIP          = "flannel.alpha.coreos.com/public-ip"
	AnnotationPublicIPOverwrite = "flannel.alpha.coreos.com/public-ip-overwrite"
	AnnotationKubeManaged       = "flannel.alpha.coreos.com/kube-subnet-manager"
)

// KubeMember is a node of flannel's Kubernetes subnet manager: its subnet
// is its Node's podCIDR, its lease the annotations it publishes on that
// Node, its peers the other Nodes' annotations. JoinKube makes one; Run
// reports peers; Close stops the informer. Nothing is removed from the
// Node at Close, as flanneld removes nothing: a restart finds its own
// annotations (and reuses the VtepMAC in them).
type KubeMember struct {
	opt      Options
	cs       kubernetes.Interface
	log      *slog.Logger
	st       *Stats
	network  NetworkConfig
	subnet   netip.Prefix
	mac      [6]byte
	publicIP string // what the public-ip annotation must say

	store *nodeStore
	stop  context.CancelFunc
	done  chan struct{}

	changed chan struct{} // cap 1: the leases changed since the last report
	fatal   chan error    // cap 1: the node lost its subnet
	repub   chan struct{} // cap 1: our annotations need publishing again

	// joined is set once subnet, mac and publicIP are final; before it
	// the reflector's goroutine leaves them alone.
	joined atomic.Bool

	mu      sync.Mutex
	leases  map[string]Lease // Node name -> its lease, for the other Nodes
	ignored ignoredNotes
}

// Network is the network config read from the net-conf file.
func (m *KubeMember) Network() NetworkConfig { return m.network }

// Subnet is the node's subnet: its Node's IPv4 podCIDR.
func (m *KubeMember) Subnet() netip.Prefix { return m.subnet }

// VtepMAC is the MAC the node publishes: Options.VtepMAC, or, when that
// was not set by the operator (VtepMACSet false), the one its Node's
// annotation already carried, so that the peers' neighbour entries stay
// valid across a restart or a switch from flanneld.
func (m *KubeMember) VtepMAC() [6]byte { return m.mac }

// restConfig is the client config: Options.RESTConfig, a kubeconfig file,
// or the in-cluster config.
func (o Options) restConfig() (*rest.Config, error) {
	switch {
	case o.RESTConfig != nil:
		return rest.CopyConfig(o.RESTConfig), nil
	case o.Kubeconfig != "":
		c, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("flannel: kubeconfig %s: %w", o.Kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("flannel: no flannel.kubeconfig and no in-cluster config (%w); set flannel.kubeconfig outside a pod", err)
	}
	return c, nil
}

// kubeDialTimeout bounds one connection attempt to the API server.
const kubeDialTimeout = 5 * time.Second

// JoinKube reads and checks the network config file, starts the informer
// on Nodes, waits for its first list and for this node's Node to have a
// podCIDR inside the network, and publishes the node's annotations. It
// waits (logging) while the API server is unreachable or the Node has no
// podCIDR yet, until ctx is done; it fails at once on a missing or bad
// network config, a backend that does not match, or a podCIDR outside the
// network.
func JoinKube(ctx context.Context, opt Options) (*KubeMember, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Stats == nil {
		opt.Stats = new(Stats)
	}
	if opt.NodeName == "" {
		return nil, errors.New("flannel: no Node name: set flannel.node_name or $NODE_NAME")
	}
	data, err := os.ReadFile(opt.NetConfPath)
	if err != nil {
		return nil, fmt.Errorf("flannel: network config: %w (flannel.net_conf; kube-flannel mounts it from its ConfigMap)", err)
	}
	nc, err := ParseNetworkConfig(data)
	if err != nil {
		return nil, fmt.Errorf("flannel: %s: %w", opt.NetConfPath, err)
	}
	if err := nc.CheckBackend(opt.Backend, opt.VNI, opt.Port); err != nil {
		return nil, fmt.Errorf("flannel: %s: %w", opt.NetConfPath, err)
	}
	rc, err := opt.restConfig()
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "tunneld"
	if rc.Dial == nil {
		// client-go's default dialer waits 30 s for a connection: one
		// attempt that finds the API server's address silent (a restart,
		// a node's link flapping) would hold the reflector that long
		// before its next try. The API server is one hop or a few away.
		rc.Dial = (&net.Dialer{Timeout: kubeDialTimeout, KeepAlive: 15 * time.Second}).DialContext
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("flannel: kubernetes client: %w", err)
	}
	m := &KubeMember{
		opt: opt, cs: cs, st: opt.Stats, network: nc,
		log:     opt.Log.With("subnet_manager", "kube", "node", opt.NodeName),
		changed: make(chan struct{}, 1), fatal: make(chan error, 1), repub: make(chan struct{}, 1),
		leases: map[string]Lease{}, done: make(chan struct{}),
	}
	start := time.Now()
	if err := m.startInformer(); err != nil {
		return nil, err
	}
	own, err := m.waitOwnNode(ctx)
	if err != nil {
		m.Close()
		return nil, err
	}
	m.mac = opt.VtepMAC
	if !opt.VtepMACSet && opt.Backend == BackendVXLAN {
		if mac, _, err := parseVXLANData([]byte(own.Annotations[AnnotationBackendData])); err == nil {
			if mac != opt.VtepMAC {
				m.log.Info("flannel: reusing the VtepMAC this Node published before", "vtep_mac", macString(mac))
			}
			m.mac = mac
		}
	}
	m.publicIP = opt.PublicIP.String()
	if o := own.Annotations[AnnotationPublicIPOverwrite]; o != "" && o != m.publicIP {
		m.log.Info("flannel: the Node's public-ip-overwrite annotation names the address the other nodes send to", "public_ip", o, "underlay_local", opt.PublicIP)
		m.publicIP = o
	}
	// subnet, mac and publicIP are final: the reflector's goroutine may
	// read them from here on (ownEvent).
	m.joined.Store(true)
	if err := m.retry(ctx, "publish the Node's annotations", func(ctx context.Context) error { return m.publish(ctx, own) }); err != nil {
		m.Close()
		return nil, err
	}
	m.log.Info("flannel: Node annotated", "subnet", m.subnet, "network", nc.Network, "backend", opt.Backend,
		"public_ip", m.publicIP, "nodes", len(m.store.ListKeys()), "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// startInformer runs a reflector on Nodes until Close, into a store that
// hands every change to nodeEvent/nodeGone. A reflector of its own rather
// than a shared informer for one reason: its backoff. The informer's (0.8 s
// doubling to 30 s, jittered to twice that) left a Node added after a 5 s
// API server outage unknown for up to 45 s; this one retries from 100 ms
// up to maxBackoff (5 s), as the etcd subnet manager does. A watch that
// breaks is resumed from the last resourceVersion; a list after one
// (Replace) is counted as a resync, and only Nodes really gone drop out.
// nodeLW bounds its list requests and logs its failures.
func (m *KubeMember) startInformer() error {
	m.store = &nodeStore{Store: cache.NewStore(cache.MetaNamespaceKeyFunc), m: m}
	r := cache.NewReflectorWithOptions(newNodeLW(m), &v1.Node{}, m.store, cache.ReflectorOptions{
		Name:    "tunneld-nodes",
		Backoff: &wait.Backoff{Duration: minBackoff, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: maxBackoff},
	})
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go func() {
		defer close(m.done)
		r.RunWithContext(ctx)
	}()
	return nil
}

// waitOwnNode waits for the informer's first list and for this node's
// Node with an IPv4 podCIDR, and sets m.subnet.
func (m *KubeMember) waitOwnNode(ctx context.Context) (*v1.Node, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	start, lastLog := time.Now(), time.Now()
	for {
		var why string
		if !m.store.synced.Load() {
			why = "waiting for the Kubernetes API server (first list of Nodes)"
		} else if obj, ok, _ := m.store.GetByKey(m.opt.NodeName); !ok {
			why = "waiting for this node's Node object"
		} else {
			n := obj.(*v1.Node)
			sn, err := podCIDR(n)
			switch {
			case errors.Is(err, errNoPodCIDR):
				why = "waiting for the Node's spec.podCIDR (assigned by kube-controller-manager --allocate-node-cidrs)"
			case err != nil:
				return nil, fmt.Errorf("flannel: Node %s: %w", n.Name, err)
			case !m.network.Network.Contains(sn.Addr()) || sn.Bits() < m.network.Network.Bits():
				return nil, fmt.Errorf("flannel: Node %s's podCIDR %s is not inside the flannel Network %s (%s); the cluster's --cluster-cidr and net-conf.json must agree",
					n.Name, sn, m.network.Network, m.opt.NetConfPath)
			default:
				m.subnet = sn
				return n.DeepCopy(), nil
			}
		}
		if time.Since(lastLog) >= 10*time.Second {
			m.log.Warn("flannel: "+why, "waited", time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("flannel: %s: %w", why, ctx.Err())
		case <-tick.C:
		}
	}
}

var errNoPodCIDR = errors.New("no IPv4 podCIDR")

// podCIDR is the Node's IPv4 pod subnet: the IPv4 entry of
// spec.podCIDRs, or spec.podCIDR when the list is empty.
func podCIDR(n *v1.Node) (netip.Prefix, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	if len(cidrs) > 2 {
		return netip.Prefix{}, fmt.Errorf("%w: podCIDRs %v: more than one IPv4 and one IPv6 subnet", ErrMalformed, cidrs)
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: podCIDR %q is not a prefix", ErrMalformed, c)
		}
		if p.Addr().Is4() {
			if p.Masked() != p {
				return netip.Prefix{}, fmt.Errorf("%w: podCIDR %s has host bits set", ErrMalformed, p)
			}
			return p, nil
		}
	}
	return netip.Prefix{}, errNoPodCIDR
}

// NodeLease reads the lease flanneld's kube subnet manager keeps on a
// Node. ok is false for a Node flannel does not manage (no
// kube-subnet-manager: "true" annotation: not joined yet, or its
// annotations were removed); err (wrapping ErrMalformed) is a managed Node
// whose annotations or podCIDR do not parse. The lease's Rev is the Node's
// resourceVersion where that is a number.
func NodeLease(n *v1.Node) (l Lease, ok bool, err error) {
	if n.Annotations[AnnotationKubeManaged] != "true" {
		return Lease{}, false, nil
	}
	sn, err := podCIDR(n)
	if err != nil {
		if errors.Is(err, errNoPodCIDR) {
			err = fmt.Errorf("%w: annotated by flannel but %v", ErrMalformed, err)
		}
		return Lease{}, true, err
	}
	l, err = leaseOf(sn, n.Annotations[AnnotationPublicIP], n.Annotations[AnnotationBackendType], []byte(n.Annotations[AnnotationBackendData]))
	if err != nil {
		return Lease{}, true, err
	}
	l.Rev, _ = strconv.ParseInt(n.ResourceVersion, 10, 64)
	return l, true, nil
}

// nodeEvent folds an added or updated Node into the peer leases. old is
// nil for an add; an update that changes nothing (the periodic resync) is
// skipped. A malformed lease is logged and counted once per version, and
// the Node's last good lease stays.
func (m *KubeMember) nodeEvent(obj any, old *v1.Node) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	if old != nil && old.ResourceVersion == n.ResourceVersion {
		return
	}
	if n.Name == m.opt.NodeName {
		m.ownEvent(n)
		return
	}
	l, managed, err := NodeLease(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !managed:
		if _, had := m.leases[n.Name]; had {
			m.log.Info("flannel: Node no longer carries flannel's annotations; removing its peer", "peer_node", n.Name)
			delete(m.leases, n.Name)
			m.signal()
		}
	case err != nil:
		m.st.MalformedLeases.Add(1)
		m.log.Warn("malformed flannel lease skipped", "peer_node", n.Name, "resource_version", n.ResourceVersion, "err", err)
	default:
		if prev, had := m.leases[n.Name]; had && leaseEqual(prev, l) {
			return
		}
		m.leases[n.Name] = l
		m.signal()
	}
}

func leaseEqual(a, b Lease) bool {
	a.Rev, b.Rev = 0, 0
	return a == b
}

func (m *KubeMember) nodeGone(name string) {
	if name == m.opt.NodeName {
		m.log.Warn("flannel: this node's Node was deleted; forwarding goes on, and the annotations are published again when it is back")
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, had := m.leases[name]; had {
		delete(m.leases, name)
		m.signal()
	}
}

// ownEvent watches this node's Node: a changed podCIDR ends Run (the
// device address and subnet.env would be wrong); annotations that are no
// longer ours (removed, or a Node created anew) are published again.
func (m *KubeMember) ownEvent(n *v1.Node) {
	if !m.joined.Load() {
		return // JoinKube reads this Node itself
	}
	{
		if sn, err := podCIDR(n); err == nil && sn != m.subnet {
			select {
			case m.fatal <- fmt.Errorf("flannel: this Node's podCIDR changed from %s to %s; restart tunneld to take the new subnet", m.subnet, sn):
			default:
			}
			return
		}
	}
	if !m.published(n) {
		select {
		case m.repub <- struct{}{}:
		default:
		}
	}
}

func (m *KubeMember) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// desired is the annotations the node publishes, as flanneld's.
func (m *KubeMember) desired() map[string]string {
	return map[string]string{
		AnnotationBackendType: m.opt.Backend,
		AnnotationBackendData: backendData(m.opt.Backend, m.opt.VNI, m.mac),
		AnnotationPublicIP:    m.publicIP,
		AnnotationKubeManaged: "true",
	}
}

func (m *KubeMember) published(n *v1.Node) bool {
	for k, v := range m.desired() {
		if n.Annotations[k] != v {
			return false
		}
	}
	return true
}

// publish patches the annotations onto the Node's status subresource (the
// only write flanneld's RBAC allows), if they are not there already.
func (m *KubeMember) publish(ctx context.Context, n *v1.Node) error {
	if n != nil && m.published(n) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": m.desired()}})
	if err != nil {
		return permanent{err}
	}
	_, err = m.cs.CoreV1().Nodes().Patch(ctx, m.opt.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "tunneld"}, "status")
	return err
}

// markNetworkAvailable sets the Node's NetworkUnavailable condition to
// False, as flanneld does once its network is up.
func (m *KubeMember) markNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	cond := []v1.NodeCondition{{
		Type: v1.NodeNetworkUnavailable, Status: v1.ConditionFalse,
		Reason: "FlannelIsUp", Message: "Flannel is running on this node (tunneld)",
		LastTransitionTime: now, LastHeartbeatTime: now,
	}}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": cond}})
	if err != nil {
		return permanent{err}
	}
	_, err = m.cs.CoreV1().Nodes().PatchStatus(ctx, m.opt.NodeName, patch)
	return err
}

// retry runs f with backoff until it succeeds, fails permanently, or ctx
// is done.
func (m *KubeMember) retry(ctx context.Context, what string, f func(ctx context.Context) error) error {
	return retry(ctx, m.log, &m.st.ControlPlaneErrors, "Kubernetes API request failed; retrying", what, f)
}

// Run sets the Node's NetworkUnavailable condition to False and reports
// peer snapshots to fn until ctx is done (then it returns nil) or the
// Node's podCIDR changes (an error). fn is called first with the Nodes
// listed at JoinKube, then once per burst of changes, each time with a
// fresh slice, on Run's goroutine. While the API server is unreachable the
// last snapshot stays in force.
func (m *KubeMember) Run(ctx context.Context, fn func([]config.Peer)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := m.retry(ctx, "set NetworkUnavailable=False", m.markNetworkAvailable); err == nil {
			m.log.Info("flannel: Node condition NetworkUnavailable=False")
		}
	}()
	snaps := &snapshots{own: m.subnet, local: m.opt.PublicIP, backend: m.opt.Backend, st: m.st, log: m.log, ignored: &m.ignored, fn: fn}
	report := func() {
		m.mu.Lock()
		all := leaseList(m.leases)
		m.mu.Unlock()
		snaps.report(all)
	}
	report()
	db := newDebouncer(m.opt.Debounce)
	defer db.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-m.fatal:
			return err
		case <-m.repub:
			m.log.Warn("flannel: this Node's annotations are not tunneld's; publishing them again")
			go m.retry(ctx, "publish the Node's annotations", func(ctx context.Context) error { return m.publish(ctx, nil) })
		case <-m.changed:
			db.poke()
		case <-db.c():
			db.fired()
			report()
		}
	}
}

// Close stops the informer and waits for it.
func (m *KubeMember) Close() error {
	m.stop()
	<-m.done
	return nil
}

func macString(mac [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
}
