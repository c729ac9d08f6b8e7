package flannel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"tunnelplane/dataplane/config"
)

// DefaultLeaseTTL is the TTL of a node's lease, flanneld's.
const DefaultLeaseTTL = 24 * time.Hour

// DefaultDebounce is how long Run waits after a watch event for more
// before it reports a snapshot; maxDelay bounds the wait under a stream.
const (
	DefaultDebounce = 50 * time.Millisecond
	maxDelay        = 500 * time.Millisecond
)

// Backoff bounds for reconnecting and retrying etcd requests.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Options configure a node's membership.
type Options struct {
	Endpoints []string
	Prefix    string // e.g. /coreos.com/network
	// PublicIP is the node's underlay address, written into its lease and
	// used to find its lease of an earlier run.
	PublicIP netip.Addr
	// Backend is "vxlan", "udp" or "ipip"; VNI and Port are tunneld's
	// (checked against the network config); VtepMAC goes into a vxlan
	// lease.
	Backend   string
	VNI, Port int
	VtepMAC   [6]byte
	// LeaseTTL is the etcd lease's TTL (0: DefaultLeaseTTL); the lease is
	// renewed an hour before it expires, or with a third of a short TTL
	// left.
	LeaseTTL time.Duration
	// Debounce (0: DefaultDebounce) is the quiet time before a snapshot.
	Debounce time.Duration
	Log      *slog.Logger
	Stats    *Stats // optional; counters shared with the caller

	// The Kubernetes subnet manager's (JoinKube): the client config
	// (RESTConfig if set, else the Kubeconfig file, else the in-cluster
	// config), this node's Node, and flannel's network config file.
	Kubeconfig  string
	RESTConfig  *rest.Config
	NodeName    string
	NetConfPath string
	// VtepMACSet says the operator chose VtepMAC (device.mac); without it
	// JoinKube reuses the VtepMAC the Node's annotation already carries.
	VtepMACSet bool
}

// Stats counts what the node saw; the caller exports it. All fields are
// updated atomically.
type Stats struct {
	MalformedLeases atomic.Uint64 // lease events skipped as malformed
	IgnoredLeases   atomic.Uint64 // lease events of another backend type
	Resyncs         atomic.Uint64 // full lists after a broken watch
	// ControlPlaneErrors counts failed requests to etcd or the API server
	// (each retried; forwarding goes on with the last peers).
	ControlPlaneErrors atomic.Uint64
	Renewals           atomic.Uint64 // successful renewals of the own lease
	Snapshots          atomic.Uint64 // peer snapshots reported
}

// Member is a node that holds a subnet lease. Join makes one; Run keeps
// its lease alive and reports peers; Close releases the client (the lease
// stays in etcd, so that a restart finds and keeps it, as with flanneld).
type Member struct {
	opt     Options
	cli     *clientv3.Client
	log     *slog.Logger
	st      *Stats
	network NetworkConfig
	subnet  netip.Prefix
	leaseID clientv3.LeaseID
	// listed is the lease list of Join, handed to the first snapshot.
	listed    map[string]Lease
	listedRev int64

	mu      sync.Mutex // guards leaseID
	ignored ignoredNotes
}

// Network is the network config read at Join.
func (m *Member) Network() NetworkConfig { return m.network }

// Subnet is the node's leased subnet.
func (m *Member) Subnet() netip.Prefix { return m.subnet }

func (m *Member) subnetsPrefix() string { return path.Join(m.opt.Prefix, "subnets") + "/" }
func (m *Member) ownKey() string        { return m.subnetsPrefix() + SubnetKey(m.subnet) }
func (m *Member) ttl() time.Duration {
	if m.opt.LeaseTTL > 0 {
		return m.opt.LeaseTTL
	}
	return DefaultLeaseTTL
}

// Join connects to etcd, reads and checks the network config, and
// acquires the node's lease. It retries while etcd is unreachable (with
// backoff, until ctx is done) but fails at once on a missing or bad
// network config or a backend that does not match.
func Join(ctx context.Context, opt Options) (*Member, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Stats == nil {
		opt.Stats = new(Stats)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opt.Endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("flannel: etcd client: %w", err)
	}
	m := &Member{opt: opt, cli: cli, log: opt.Log.With("subnet_manager", "etcd"), st: opt.Stats}
	start := time.Now()
	if err := m.join(ctx); err != nil {
		cli.Close()
		return nil, err
	}
	m.log.Info("flannel lease acquired", "subnet", m.subnet, "network", m.network.Network, "backend", opt.Backend,
		"public_ip", opt.PublicIP, "leases", len(m.listed), "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// Close closes the etcd client. The lease is left to its TTL.
func (m *Member) Close() error { return m.cli.Close() }

// retry runs f with backoff until it succeeds, fails permanently, or ctx
// is done.
func (m *Member) retry(ctx context.Context, what string, f func(ctx context.Context) error) error {
	return retry(ctx, m.log, &m.st.ControlPlaneErrors, "etcd request failed; retrying", what, f)
}

func (m *Member) join(ctx context.Context) error {
	cfgKey := path.Join(m.opt.Prefix, "config")
	err := m.retry(ctx, "read network config", func(ctx context.Context) error {
		resp, err := m.cli.Get(ctx, cfgKey)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return permanent{fmt.Errorf("flannel: no network config at %s in etcd; write one, e.g. etcdctl put %s '{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}'", cfgKey, cfgKey)}
		}
		nc, err := ParseNetworkConfig(resp.Kvs[0].Value)
		if err != nil {
			return permanent{fmt.Errorf("flannel: %s: %w", cfgKey, err)}
		}
		if err := nc.CheckBackend(m.opt.Backend, m.opt.VNI, m.opt.Port); err != nil {
			return permanent{fmt.Errorf("flannel: %s: %w", cfgKey, err)}
		}
		m.network = nc
		return nil
	})
	if err != nil {
		return err
	}
	const raceRetries = 10
	for i := 0; i < raceRetries; i++ {
		var won bool
		err := m.retry(ctx, "acquire lease", func(ctx context.Context) error {
			var err error
			won, err = m.tryAcquire(ctx)
			return err
		})
		if err != nil {
			return err
		}
		if won {
			return nil
		}
	}
	return errors.New("flannel: another node took each subnet picked; giving up after 10 tries")
}

// list reads every lease below <prefix>/subnets. Malformed ones are
// logged, counted and left out.
func (m *Member) list(ctx context.Context) (map[string]Lease, map[string]clientv3.LeaseID, int64, error) {
	resp, err := m.cli.Get(ctx, m.subnetsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, nil, 0, err
	}
	leases := make(map[string]Lease, len(resp.Kvs))
	ids := make(map[string]clientv3.LeaseID, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if l, ok := m.parse(kv); ok {
			leases[string(kv.Key)] = l
			ids[string(kv.Key)] = clientv3.LeaseID(kv.Lease)
		}
	}
	return leases, ids, resp.Header.Revision, nil
}

func (m *Member) parse(kv *mvccpb.KeyValue) (Lease, bool) {
	l, err := ParseLease(string(kv.Key), kv.Value)
	if err != nil {
		m.st.MalformedLeases.Add(1)
		m.log.Warn("malformed flannel lease skipped", "key", string(kv.Key), "rev", kv.ModRevision, "err", err)
		return Lease{}, false
	}
	l.Rev = kv.ModRevision
	return l, true
}

// tryAcquire makes one attempt: reuse the lease with our PublicIP if it
// fits the network, else create a free subnet's key if it is still
// absent. It reports false when another writer won the race.
func (m *Member) tryAcquire(ctx context.Context) (bool, error) {
	leases, ids, rev, err := m.list(ctx)
	if err != nil {
		return false, err
	}
	all := leaseList(leases)
	value := string(EncodeLease(m.opt.PublicIP, m.opt.Backend, m.opt.VNI, m.opt.VtepMAC))
	grant, err := m.cli.Grant(ctx, int64(m.ttl()/time.Second))
	if err != nil {
		return false, err
	}
	revoke := func() { m.cli.Revoke(context.WithoutCancel(ctx), grant.ID) }
	if own, ok := FindOwn(all, m.opt.PublicIP, m.network); ok {
		key := m.subnetsPrefix() + SubnetKey(own.Subnet)
		if m.network.Compatible(own.Subnet) {
			// Rewrite it under the new etcd lease only if nobody touched
			// it since the list.
			tr, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", own.Rev)).
				Then(clientv3.OpPut(key, value, clientv3.WithLease(grant.ID))).Commit()
			if err != nil {
				revoke()
				return false, err
			}
			if !tr.Succeeded {
				revoke()
				return false, nil
			}
			if old := ids[key]; old != clientv3.NoLease && old != grant.ID {
				m.cli.Revoke(ctx, old) // its only key moved to the new lease
			}
			m.log.Info("flannel: reusing the lease of this PublicIP", "subnet", own.Subnet)
			m.subnet, m.leaseID = own.Subnet, grant.ID
			m.keepListed(leases, rev, tr.Header.Revision)
			return true, nil
		}
		m.log.Warn("flannel: the lease of this PublicIP does not fit the network config; deleting it", "subnet", own.Subnet)
		if _, err := m.cli.Delete(ctx, key); err != nil {
			revoke()
			return false, err
		}
		delete(leases, key)
		all = leaseList(leases)
	}
	taken := make([]netip.Prefix, 0, len(all))
	for _, l := range all {
		taken = append(taken, l.Subnet)
	}
	sn, err := Allocate(m.network, taken, rand.IntN)
	if err != nil {
		revoke()
		return false, permanent{fmt.Errorf("flannel: %w", err)}
	}
	key := m.subnetsPrefix() + SubnetKey(sn)
	tr, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "=", 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(grant.ID))).Commit()
	if err != nil {
		revoke()
		return false, err
	}
	if !tr.Succeeded {
		revoke()
		return false, nil
	}
	m.log.Info("flannel: allocated a new subnet", "subnet", sn)
	m.subnet, m.leaseID = sn, grant.ID
	m.keepListed(leases, rev, tr.Header.Revision)
	return true, nil
}

// keepListed keeps Join's list for Run. Our own write came after it, so
// Run's watch starts after the list and replays that write (and anything
// else written since), which is harmless.
func (m *Member) keepListed(leases map[string]Lease, rev, _ int64) {
	m.listed, m.listedRev = leases, rev
}

// Run keeps the node's lease alive and reports peer snapshots to fn until
// ctx is done (then it returns nil) or the node loses its subnet to
// another node (an error: the device address and subnet.env would be
// wrong). fn is called first with the leases listed at Join, then once per
// burst of changes, each time with a fresh slice; it runs on Run's
// goroutine. While etcd is unreachable fn is not called: the last
// snapshot stays in force.
func (m *Member) Run(ctx context.Context, fn func([]config.Peer)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewErr := make(chan error, 1)
	go func() { renewErr <- m.renewLoop(ctx) }()

	leases, rev := m.listed, m.listedRev
	m.listed = nil
	snaps := &snapshots{own: m.subnet, local: m.opt.PublicIP, backend: m.opt.Backend, st: m.st, log: m.log, ignored: &m.ignored, fn: fn}
	report := func() { snaps.report(leaseList(leases)) }
	report()

	db := newDebouncer(m.opt.Debounce)
	defer db.stop()
	wait := minBackoff
	for {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := m.cli.Watch(wctx, m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
		broken := false
		for !broken {
			select {
			case <-ctx.Done():
				wcancel()
				return nil
			case err := <-renewErr:
				wcancel()
				return err
			case <-db.c():
				db.fired()
				report()
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil || wr.Canceled {
					if ctx.Err() == nil {
						m.st.ControlPlaneErrors.Add(1)
						m.log.Warn("etcd watch broken; keeping the last peers, resyncing", "err", wr.Err(), "rev", rev)
					}
					broken = true
					break
				}
				wait = minBackoff
				for _, ev := range wr.Events {
					if err := m.apply(ctx, leases, ev); err != nil {
						wcancel()
						return err
					}
					rev = max(rev, ev.Kv.ModRevision)
				}
				if len(wr.Events) > 0 {
					db.poke()
				}
			}
		}
		wcancel()
		// Resync: list again at a fresh revision, replace what we knew
		// (only leases really gone drop out), and watch from there.
		for {
			select {
			case <-ctx.Done():
				return nil
			case err := <-renewErr:
				return err
			case <-time.After(wait):
			}
			wait = min(2*wait, maxBackoff)
			lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
			fresh, _, frev, err := m.list(lctx)
			lcancel()
			if err != nil {
				if ctx.Err() == nil {
					m.st.ControlPlaneErrors.Add(1)
					m.log.Warn("etcd list failed; keeping the last peers", "err", err, "retry_in", wait)
				}
				continue
			}
			m.st.Resyncs.Add(1)
			leases, rev = fresh, frev
			if _, ok := leases[m.ownKey()]; !ok {
				if err := m.recreateOwn(ctx); err != nil {
					return err
				}
			}
			m.log.Info("etcd resynced", "leases", len(leases), "rev", rev)
			db.reset()
			report()
			break
		}
	}
}

// apply folds one watch event into leases. A malformed put is skipped (the
// last good value of that key stays); our own key deleted is recreated.
func (m *Member) apply(ctx context.Context, leases map[string]Lease, ev *clientv3.Event) error {
	key := string(ev.Kv.Key)
	switch ev.Type {
	case clientv3.EventTypeDelete:
		delete(leases, key)
		if key == m.ownKey() {
			return m.recreateOwn(ctx)
		}
	case clientv3.EventTypePut:
		if l, ok := m.parse(ev.Kv); ok {
			leases[key] = l
		}
	}
	return nil
}

// recreateOwn puts the node's lease back after it was deleted or expired
// (say, etcd was away longer than the TTL): the same subnet, if no other
// node has taken it meanwhile.
func (m *Member) recreateOwn(ctx context.Context) error {
	m.log.Warn("flannel: own lease is gone from etcd; recreating it", "subnet", m.subnet)
	return m.retry(ctx, "recreate own lease", func(ctx context.Context) error {
		grant, err := m.cli.Grant(ctx, int64(m.ttl()/time.Second))
		if err != nil {
			return err
		}
		key := m.ownKey()
		value := string(EncodeLease(m.opt.PublicIP, m.opt.Backend, m.opt.VNI, m.opt.VtepMAC))
		tr, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "=", 0)).
			Then(clientv3.OpPut(key, value, clientv3.WithLease(grant.ID))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			m.cli.Revoke(context.WithoutCancel(ctx), grant.ID)
			return err
		}
		if !tr.Succeeded {
			m.cli.Revoke(context.WithoutCancel(ctx), grant.ID)
			kvs := tr.Responses[0].GetResponseRange().Kvs
			if len(kvs) > 0 {
				if l, err := ParseLease(key, kvs[0].Value); err == nil && l.PublicIP == m.opt.PublicIP {
					return nil // ours already (a renewal raced us)
				}
			}
			return permanent{fmt.Errorf("flannel: subnet %s was taken by another node while this node's lease was gone; restart tunneld to lease a new one", m.subnet)}
		}
		m.mu.Lock()
		m.leaseID = grant.ID
		m.mu.Unlock()
		return nil
	})
}

// renewLoop renews the etcd lease an hour before it expires (flanneld's
// renew margin), or with a third of the TTL left when the TTL is short,
// retrying with backoff while etcd is away.
func (m *Member) renewLoop(ctx context.Context) error {
	ttl := m.ttl()
	every := ttl - min(time.Hour, ttl/3)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
		err := m.retry(ctx, "renew lease", func(ctx context.Context) error {
			m.mu.Lock()
			id := m.leaseID
			m.mu.Unlock()
			_, err := m.cli.KeepAliveOnce(ctx, id)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				// expired while etcd was away: the key went with it
				return m.recreateOwn(ctx)
			}
			return err
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		m.st.Renewals.Add(1)
		m.log.Debug("flannel lease renewed", "subnet", m.subnet, "ttl", ttl)
	}
}

func peersEqual(a, b []config.Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Remote != b[i].Remote || a[i].MAC != b[i].MAC || a[i].MACSet != b[i].MACSet || len(a[i].Prefixes) != len(b[i].Prefixes) {
			return false
		}
		for j := range a[i].Prefixes {
			if a[i].Prefixes[j] != b[i].Prefixes[j] {
				return false
			}
		}
	}
	return true
}
